//! The library's definitions — models, automation rules, forwarding destinations, alarm
//! rules — as the gateway names them: their kinds, keys and functions, and ids. The REST
//! routes are in `api/definitions.rs`, the Redis work in `jobs.rs`.

pub mod jobs;

/// Field/value pairs as Redis holds them.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// A definition: its id and its fields.
pub type Record = (String, Fields);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Models,
    Rules,
    Forwarding,
    AlarmRules,
}

impl Kind {
    /// Key prefix of one definition (`model:{id}`).
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Models => "model:",
            Kind::Rules => "rule:",
            Kind::Forwarding => "forward:",
            Kind::AlarmRules => "alarm:rule:",
        }
    }

    /// The set of every defined id.
    pub fn ids_key(self) -> &'static str {
        match self {
            Kind::Models => "model:ids",
            Kind::Rules => "rule:ids",
            Kind::Forwarding => "forward:names",
            Kind::AlarmRules => "alarm:rules",
        }
    }

    pub fn save_function(self) -> &'static str {
        match self {
            Kind::Models => "modsrv_model_save",
            Kind::Rules => "rulesrv_rule_save",
            Kind::Forwarding => "netsrv_forward_save",
            Kind::AlarmRules => "alarmsrv_rule_save",
        }
    }

    pub fn delete_function(self) -> &'static str {
        match self {
            Kind::Models => "modsrv_model_delete",
            Kind::Rules => "rulesrv_rule_delete",
            Kind::Forwarding => "netsrv_forward_delete",
            Kind::AlarmRules => "alarmsrv_rule_delete",
        }
    }

    /// The list route (for metrics labels and the API description).
    pub fn collection_path(self) -> &'static str {
        match self {
            Kind::Models => "/api/models",
            Kind::Rules => "/api/rules",
            Kind::Forwarding => "/api/forwarding",
            Kind::AlarmRules => "/api/alarms/rules",
        }
    }

    /// One definition's route template.
    pub fn item_path(self) -> &'static str {
        match self {
            Kind::Models => "/api/models/:id",
            Kind::Rules => "/api/rules/:id",
            Kind::Forwarding => "/api/forwarding/:name",
            Kind::AlarmRules => "/api/alarms/rules/:id",
        }
    }

    /// Destinations also report their counters (`forward:{name}:stats`).
    pub fn has_stats(self) -> bool {
        self == Kind::Forwarding
    }

    /// Fields that must be JSON arrays: the library's JSON decoder reads `{}` as `[]`, so the
    /// gateway tells them apart.
    pub fn array_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Models => &["inputs"],
            Kind::Rules => &["conditions"],
            Kind::Forwarding => &["channels", "data_types"],
            Kind::AlarmRules => &[],
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Models => "model",
            Kind::Rules => "rule",
            Kind::Forwarding => "destination",
            Kind::AlarmRules => "alarm rule",
        }
    }
}

/// An id as the library accepts them: 1–64 of `A-Za-z0-9_.-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !matches!(id, "ids" | "index" | "firings" | "names" | "destinations")
}
