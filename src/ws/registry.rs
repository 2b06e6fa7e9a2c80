//! Live client ids across all shards: takeover (a second connection with the same
//! `client_id` replaces the first, wherever it lives — when it acts as the same user) and
//! unique generated ids.

use crate::fanout::ConnId;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

/// Who holds a client id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub shard: usize,
    pub conn: ConnId,
}

/// Who holds a client id, as which user (`None`: anonymous), and whether it was asked for
/// (`?client_id=`: claimed in Redis too, so another gateway's connection can take it over).
type Holder = (Owner, Option<String>, bool);

/// The name a holder acts as (`anonymous` without a user), as acks and claims record it.
fn name_of(user: &Option<String>) -> String {
    user.clone().unwrap_or_else(|| "anonymous".to_string())
}

#[derive(Default)]
pub struct Registry {
    ids: Mutex<HashMap<String, Holder>>,
    random: RandomState,
}

/// A client id held by another user's connection: takeover is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldByAnother;

impl Registry {
    /// Takes `id` for `owner` acting as `user`; returns the connection it replaces, if one
    /// held it — or refuses when that one acts as another user (any page could otherwise
    /// evict any dashboard by guessing its id).
    pub fn claim(
        &self,
        id: &str,
        owner: Owner,
        user: Option<&str>,
    ) -> Result<Option<Owner>, HeldByAnother> {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, holder, _)) = ids.get(id) {
            if holder.as_deref() != user {
                return Err(HeldByAnother);
            }
        }
        Ok(ids
            .insert(id.to_owned(), (owner, user.map(str::to_owned), true))
            .map(|(old, _, _)| old)
            .filter(|old| *old != owner))
    }

    /// Whether `user` may take `id` now (free, or held by the same user).
    pub fn may_claim(&self, id: &str, user: Option<&str>) -> bool {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.get(id)
            .is_none_or(|(_, holder, _)| holder.as_deref() == user)
    }

    /// Generates `client_` + 8 lowercase hex digits, unique among live connections, and
    /// registers it for `owner`.
    pub fn generate(&self, owner: Owner, user: Option<&str>) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = owner.conn;
        loop {
            let id = format!("client_{:08x}", self.random.hash_one(n) as u32);
            if !ids.contains_key(&id) {
                ids.insert(id.clone(), (owner, user.map(str::to_owned), false));
                return id;
            }
            n = n.wrapping_add(0x9E37_79B9);
        }
    }

    /// Frees `id` if `conn` still holds it (a replaced connection must not free its successor's id).
    pub fn release(&self, id: &str, conn: ConnId) {
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.get(id).is_some_and(|(o, _, _)| o.conn == conn) {
            ids.remove(id);
        }
    }

    /// Who holds `id` now.
    /// The connection holding `id`, and the name it acts as (`anonymous` without a user).
    pub fn holder(&self, id: &str) -> Option<(Owner, String)> {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|(o, u, _)| (*o, name_of(u)))
    }

    /// The ids asked for (claimed in Redis too), the connections holding them and the names
    /// they act as.
    pub fn claimed(&self) -> Vec<(String, Owner, String)> {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (_, _, asked))| *asked)
            .map(|(id, (o, u, _))| (id.clone(), *o, name_of(u)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takeover_and_release() {
        let r = Registry::default();
        let a = Owner { shard: 0, conn: 1 };
        let b = Owner { shard: 1, conn: 2 };
        assert_eq!(r.claim("dashboard_001", a, None), Ok(None));
        assert_eq!(r.claim("dashboard_001", b, None), Ok(Some(a)));
        assert!(!r.may_claim("dashboard_001", Some("alice")));
        assert_eq!(
            r.claim("dashboard_001", a, Some("alice")),
            Err(HeldByAnother),
            "another user cannot take it over"
        );
        r.release("dashboard_001", 1);
        assert_eq!(
            r.len(),
            1,
            "the replaced connection does not free the new one's id"
        );
        r.release("dashboard_001", 2);
        assert!(r.is_empty());
    }

    #[test]
    fn generated_ids_are_unique_and_well_formed() {
        let r = Registry::default();
        let mut seen = std::collections::HashSet::new();
        for conn in 0..5000 {
            let id = r.generate(Owner { shard: 0, conn }, None);
            assert_eq!(id.len(), 15);
            assert!(id.starts_with("client_"));
            assert!(id[7..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(seen.insert(id));
        }
    }
}
