#!/bin/bash
# Assertion-based tests of lua/voltage.lua through redis-cli, against a Redis on $PORT.
# Run by tests/lua_library.rs (cargo test) on a private redis-server; it FLUSHALLs that server.
LIB="$(dirname "$0")/voltage.lua"
PORT=${PORT:-7391}; R="redis-cli -p $PORT"; pass=0; fail=0
eq() { if [ "$2" == "$3" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL $1: got [$2] want [$3]"; fi; }
has() { case "$2" in *"$3"*) pass=$((pass+1));; *) fail=$((fail+1)); echo "FAIL $1: [$2] lacks [$3]";; esac; }
W() { $R FCALL comsrv_write_data 1 "$@"; }
C() { $R FCALL netsrv_collect_data 3 netsrv:seq netsrv:dirty netsrv:epoch "$@" | tr '\n' ' ' | sed 's/ $//'; }
eq load "$($R -x FUNCTION LOAD REPLACE < "$LIB")" voltage
$R FLUSHALL >/dev/null
eq version "$($R --no-raw FCALL_RO voltage_version 0)" "(integer) 30"
eq write1 "$($R --no-raw FCALL comsrv_write_data 1 comsrv:1001:T '{"1":25.6,"2":101.3}')" "(integer) 2"
eq v1 "$($R HGET comsrv:1001:T 1)" 25.6; eq v2 "$($R HGET comsrv:1001:T 2)" 101.3
now=$($R TIME | head -1); ts=$($R HGET comsrv:1001:T _timestamp); [ $((now-ts)) -le 1 ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL ts default $ts vs $now"; }
eq seq "$($R GET netsrv:seq)" 1; eq dirty "$($R ZRANGE netsrv:dirty 0 -1 WITHSCORES | tr '\n' ' ')" "1001:T 1 "
has epoch "$($R GET netsrv:epoch)" "-"
# precision
W comsrv:1:T '{"1":0.30000000000000004,"2":1234567890.12345,"3":1e300,"4":-0.5,"5":1,"6":-7,"7":0.1,"8":-0.0,"9":1.7976931348623157e308,"10":123456789.123456789,"11":2.5e-8}' 1700000000.7 >/dev/null
for pv in "1 0.30000000000000004" "2 1234567890.12345" "3 1e+300" "4 -0.5" "5 1" "6 -7" "7 0.1" "8 0" "9 1.7976931348623157e+308" "10 123456789.12345679" "11 2.5e-08" "_timestamp 1700000000"; do
  set -- $pv; eq "prec $1" "$($R HGET comsrv:1:T $1)" "$2"; done
# integers take a %d fast path below 1e15; it must agree with the general path at the edges
W comsrv:1:T '{"1":999999999999999,"2":-999999999999999,"3":1000000000000000,"4":100000000000000,"5":-1,"6":4294967295,"7":2.0,"8":-3e2}' >/dev/null
for pv in "1 999999999999999" "2 -999999999999999" "3 1e+15" "4 100000000000000" "5 -1" "6 4294967295" "7 2" "8 -300"; do
  set -- $pv; eq "int $1" "$($R HGET comsrv:1:T $1)" "$2"; done
# point ids are cached once valid; a cached id beside an invalid one still writes nothing
W comsrv:1:T '{"42":1}' >/dev/null; W comsrv:1:T '{"42":2}' >/dev/null; eq pid-cached "$($R HGET comsrv:1:T 42)" 2
has pid-cached-bad "$(W comsrv:1:T '{"42":3,"042":4}')" "ERR invalid point id"; eq pid-cached-nowrite "$($R HGET comsrv:1:T 42)" 2
# strings / booleans
eq sb "$(W comsrv:1:S '{"1":true,"2":false,"3":"on","4":"","5":"25.60"}')" 5
for pv in "1 1" "2 0" "3 on" "5 25.60"; do set -- $pv; eq "sb $1" "$($R HGET comsrv:1:S $1)" "$2"; done
eq sb-empty "$($R HEXISTS comsrv:1:S 4)/$($R HGET comsrv:1:S 4)" "1/"
# errors: nothing written
seq0=$($R GET netsrv:seq)
for k in comsrv:0:T comsrv:01:T comsrv:4294967296:T comsrv:1:X comsrv:1:t comsrv:1 foo comsrv:1:T:TODO; do has "key $k" "$(W $k '{"1":1}')" "ERR invalid key"; done
eq maxch "$(W comsrv:4294967295:A '{"1":1}')" 1; seq0=$((seq0+1))
for j in '' 'nope' '{"1":1' ; do has "json [$j]" "$(W comsrv:9:T "$j")" "ERR invalid values_json"; done
for j in '[1,2]' '5' '"s"' 'null'; do has "notobj [$j]" "$(W comsrv:9:T "$j")" "expected a JSON object"; done
for j in '{"1":1,"2":null}' '{"1":1,"2":{"a":1}}' '{"1":1,"2":[1]}' '{"1":1,"2":1e400}' '{"1":1,"2":NaN}'; do has "val [$j]" "$(W comsrv:9:T "$j")" "ERR invalid value for point 2"; done
for j in '{"1":1,"x":2}' '{"1":1,"01":2}' '{"1":1,"-1":2}' '{"1":1,"1.5":2}' '{"1":1,"4294967296":2}' '{"1":1,"_timestamp":2}' '{"1":1,"":2}'; do has "pid [$j]" "$(W comsrv:9:T "$j")" "ERR invalid point id"; done
for t in abc -1 1e30 inf 0x10 1e9 ' 5' 4102444800; do has "ts $t" "$(W comsrv:9:T '{"1":1}' "$t")" "ERR invalid unix_ts"; done
# numeric strings must be finite (clients get them as JSON numbers); words stay strings
for j in '{"1":1,"2":"1e999"}' '{"1":1,"2":"-1E400"}' '{"1":1,"2":".5e999"}'; do has "nonfinite [$j]" "$(W comsrv:9:T "$j")" "ERR invalid value for point 2"; done
has nargs0 "$(W comsrv:9:T)" "ERR"; has nargs3 "$(W comsrv:9:T '{}' 1 2)" "ERR"; has nkeys "$($R FCALL comsrv_write_data 0 '{}')" "ERR"
eq nothing "$($R EXISTS comsrv:9:T)/$($R GET netsrv:seq)" "0/$seq0"
eq empty-obj "$(W comsrv:9:T '{}')/$(W comsrv:9:T '[]')/$($R EXISTS comsrv:9:T)/$($R GET netsrv:seq)" "0/0/0/$seq0"
eq pid0max "$(W comsrv:9:T '{"0":1,"4294967295":2}' 1700000001)" 2; eq ts-explicit "$($R HGET comsrv:9:T _timestamp)" 1700000001
eq ts-empty "$(W comsrv:9:T '{"1":3}' '')" 1
# wrong-type target: error, nothing written (not even the bookkeeping)
seqw=$($R GET netsrv:seq)
$R SET comsrv:8:T str >/dev/null; has wrongtype "$(W comsrv:8:T '{"1":1}')" WRONGTYPE; $R DEL comsrv:8:T >/dev/null
eq wrongtype-nothing "$($R GET netsrv:seq)/$($R ZSCORE netsrv:dirty 8:T)" "$seqw/"
eq words-stay "$(W comsrv:9:S '{"1":"inf","2":"nan"}')/$($R HGET comsrv:9:S 1)" "2/inf"
# corrupt bookkeeping keys: the write fails and its data is not written (it could never be collected)
$R SET netsrv:dirty oops >/dev/null; has dirty-wrongtype "$(W comsrv:8:T '{"1":1}')" WRONGTYPE; eq dirty-nodata "$($R EXISTS comsrv:8:T)" 0; $R DEL netsrv:dirty >/dev/null
$R DEL netsrv:epoch >/dev/null; $R HSET netsrv:epoch a b >/dev/null; has epoch-wrongtype "$(W comsrv:8:T '{"1":1}')" WRONGTYPE; eq epoch-nodata "$($R EXISTS comsrv:8:T)" 0; $R DEL netsrv:epoch >/dev/null
# big write (chunked HSET)
big=$(python3 -c 'import json; print(json.dumps({str(i): i*0.1 for i in range(20000)}))')
eq big "$(echo -n "$big" | $R -x FCALL comsrv_write_data 1 comsrv:77:T)" 20000; eq bigh "$($R HLEN comsrv:77:T)" 20002; eq big3 "$($R HGET comsrv:77:T 3)" 0.30000000000000004
# collect
$R FLUSHALL >/dev/null
eq c-empty "$(C 0 '' 10 | cut -d' ' -f2-)" "0 0 0 0"
for ch in 1 2 3 4 5; do W comsrv:$ch:T "{\"1\":$ch}" >/dev/null; done; E=$($R GET netsrv:epoch)
eq c-all "$(C 0 "$E" 100)" "$E 5 5 0 0 1:T 1 2:T 2 3:T 3 4:T 4 5:T 5"
eq c-cursor "$(C 3 "$E" 100)" "$E 5 5 0 0 4:T 4 5:T 5"
eq c-head "$(C 5 "$E" 100)" "$E 5 5 0 0"
eq c-p1 "$(C 0 "$E" 2)" "$E 5 2 0 1 1:T 1 2:T 2"
eq c-p2 "$(C 2 "$E" 2)" "$E 5 4 0 1 3:T 3 4:T 4"
eq c-p3 "$(C 4 "$E" 2)" "$E 5 5 0 0 5:T 5"
eq c-exact "$(C 0 "$E" 5)" "$E 5 5 0 0 1:T 1 2:T 2 3:T 3 4:T 4 5:T 5"
W comsrv:2:T '{"1":9}' >/dev/null
eq c-rewrite "$(C 5 "$E" 10)" "$E 6 6 0 0 2:T 6"
eq c-one-entry "$($R ZCARD netsrv:dirty)" 5
eq c-badepoch "$(C 4 bogus 10)" "$E 6 6 1 0 1:T 1 3:T 3 4:T 4 5:T 5 2:T 6"
eq c-above "$(C 99 "$E" 10)" "$E 6 6 1 0 1:T 1 3:T 3 4:T 4 5:T 5 2:T 6"
eq c-noepoch "$(C 5 '' 10)" "$E 6 6 0 0 2:T 6"
eq c-types "$($R --no-raw FCALL netsrv_collect_data 3 netsrv:seq netsrv:dirty netsrv:epoch 5 '' 10 | tr '\n' '|')" '1) "'"$E"'"|2) (integer) 6|3) (integer) 6|4) (integer) 0|5) (integer) 0|6) "2:T"|7) (integer) 6|'
for a in "x 10" "-1 10" "1.5 10" "0 0" "0 -1" "0 x" "0 1.5"; do set -- $a; has "c-bad $a" "$(C $1 '' $2)" "ERR invalid"; done
has c-nargs "$(C 0 '')" "ERR"; has c-keys "$($R FCALL netsrv_collect_data 3 a b c 0 '' 10)" "ERR"
has c-ro "$($R FCALL_RO netsrv_collect_data 3 netsrv:seq netsrv:dirty netsrv:epoch 0 '' 10)" "ERR"
$R FLUSHALL >/dev/null
out=$(C 6 "$E" 10); E2=${out%% *}; [ "$E2" != "$E" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL flush epoch same"; }
eq c-flush "$out" "$E2 0 0 1 0"
W comsrv:9:S '{"1":true}' >/dev/null
eq c-flush2 "$(C 6 "$E" 10)" "$E2 1 1 1 0 9:S 1"
eq c-flush3 "$(C 0 "$E2" 10)" "$E2 1 1 0 0 9:S 1"
# seq lost (DEL) -> write continues above dirty, epoch rotates
W comsrv:10:S '{"1":1}' >/dev/null; $R DEL netsrv:seq >/dev/null; W comsrv:11:S '{"1":1}' >/dev/null
eq seqlost "$($R GET netsrv:seq)" 3; E3=$($R GET netsrv:epoch); [ "$E3" != "$E2" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL seqlost epoch"; }
# seq set back -> collect renumbers and rotates
$R SET netsrv:seq 1 >/dev/null; W comsrv:12:S '{"1":1}' >/dev/null
out=$(C 3 "$E3" 10); E4=${out%% *}; [ "$E4" != "$E3" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL renumber epoch"; }
eq renumber "${out#* }" "7 7 1 0 9:S 4 10:S 5 12:S 6 11:S 7"
# wake-up hint: a caught-up collect with wake=1 arms it; the next write publishes once
$R FLUSHALL >/dev/null
WAKE_OUT=$(mktemp); timeout 5 $R SUBSCRIBE netsrv:wake >"$WAKE_OUT" 2>/dev/null & SUB=$!
for _ in $(seq 1 50); do [ "$($R PUBSUB NUMSUB netsrv:wake | tail -1)" = 1 ] && break; sleep 0.05; done
wakes() { grep -c '^message$' "$WAKE_OUT"; }
W comsrv:1:T '{"1":1}' >/dev/null; sleep 0.1; eq wake-unarmed "$(wakes)" 0
C 0 '' 10 1 >/dev/null                                   # caught up, wake=1: armed
W comsrv:2:S '{"1":1}' >/dev/null; sleep 0.1; eq wake-once "$(wakes)" 1
has wake-member "$(cat "$WAKE_OUT")" "2:S"
W comsrv:3:T '{"1":1}' >/dev/null; sleep 0.1; eq wake-disarmed "$(wakes)" 1
C 0 '' 1 1 >/dev/null                                    # more=1 (backlog): not armed
W comsrv:4:T '{"1":1}' >/dev/null; sleep 0.1; eq wake-backlog "$(wakes)" 1
C 0 '' 10 0 >/dev/null; C 0 '' 10 >/dev/null             # wake=0 or absent: not armed
W comsrv:5:T '{"1":1}' >/dev/null; sleep 0.1; eq wake-off "$(wakes)" 1
C 0 '' 10 1 >/dev/null; W comsrv:6:T '{}' >/dev/null     # an empty write changes nothing
W comsrv:7:T '{"1":"x"}' >/dev/null; sleep 0.1; eq wake-rearmed "$(wakes)" 2
has wake-bad "$(C 0 '' 10 2)" "ERR invalid wake"; has wake-nargs "$(C 0 '' 10 1 x)" "ERR"
# a writer whose ACL lacks the channel still writes (the publish is best effort)
$R ACL SETUSER vgw_nochan on '>pw' '~*' '+@all' resetchannels >/dev/null
C 0 '' 10 1 >/dev/null
eq wake-acl "$(redis-cli -p $PORT --user vgw_nochan --pass pw --no-auth-warning FCALL comsrv_write_data 1 comsrv:8:T '{"1":8}')" 1
eq wake-acl-written "$($R HGET comsrv:8:T 1)" 8
$R ACL DELUSER vgw_nochan >/dev/null
kill $SUB 2>/dev/null; wait $SUB 2>/dev/null; rm -f "$WAKE_OUT"
# ---- alarms: rules, index, trigger/recover events, active set ----
$R FLUSHALL >/dev/null
RS() { $R FCALL alarmsrv_rule_save 1 "alarm:rule:$1" "$2"; }
RD() { $R FCALL alarmsrv_rule_delete 1 "alarm:rule:$1"; }
AC() { $R FCALL alarmsrv_check 1 "$@"; }
EV() { $R XLEN alarm:events; }
# field of the last event
LE() { $R --raw XREVRANGE alarm:events + - COUNT 1 | awk -v f="$1" 'prev==f {print; exit} {prev=$0}'; }
W comsrv:1001:T '{"1":20,"2":5}' >/dev/null
eq r-save "$(RS hot '{"channel_id":1001,"data_type":"T","point_id":1,"operator":">","threshold":90,"level":2,"message":"Temperature exceeds threshold","deadband":2}')" 0
eq r-stored "$($R HGET alarm:rule:hot operator)/$($R HGET alarm:rule:hot threshold)/$($R HGET alarm:rule:hot enabled)/$($R HGET alarm:rule:hot deadband)" ">/90/1/2"
eq r-index "$($R HGET alarm:index:1001:T 1)" "hot > 90 2 0"
eq r-noevent "$(EV)" 0
W comsrv:1001:T '{"1":95.5}' >/dev/null
eq trig-1 "$(EV)" 1
eq idx-active "$($R HGET alarm:index:1001:T 1)" "hot > 90 2 1"
eq trig-fields "$(LE alarm_id)/$(LE status)/$(LE level)/$(LE value)/$(LE channel_id)/$(LE data_type)/$(LE point_id)/$(LE rule_id)" "ALM_1/1/2/95.5/1001/T/1/hot"
eq trig-msg "$(LE message)" "Temperature exceeds threshold"
has trig-active "$($R HGET alarm:active hot)" '"alarm_id":"ALM_1"'
has trig-active-value "$($R HGET alarm:active hot)" '"value":95.5,'
W comsrv:1001:T '{"1":97}' >/dev/null; W comsrv:1001:T '{"1":91}' >/dev/null
eq same-side "$(EV)" 1
W comsrv:1001:T '{"1":89}' >/dev/null
eq deadband-holds "$(EV)" 1
W comsrv:1001:T '{"1":87.5}' >/dev/null
eq recover "$(EV)/$(LE status)/$(LE alarm_id)/$(LE value)" "2/0/ALM_1/87.5"
eq recover-inactive "$($R HEXISTS alarm:active hot)" 0
eq idx-inactive "$($R HGET alarm:index:1001:T 1)" "hot > 90 2 0"
W comsrv:1001:T '{"1":88}' >/dev/null; eq recovered-stays "$(EV)" 2
W comsrv:1001:T '{"1":100}' >/dev/null; eq retrigger-new-id "$(EV)/$(LE alarm_id)" "3/ALM_2"
# other points of the hash, strings and other hashes do not evaluate the rule
W comsrv:1001:T '{"2":1000}' >/dev/null; W comsrv:1001:S '{"1":1000}' >/dev/null; eq other-points "$(EV)" 3
W comsrv:1001:T '{"1":"n/a"}' >/dev/null; eq non-numeric-skipped "$(EV)/$($R HEXISTS alarm:active hot)" "3/1"
# several rules on one point, all operators
RS low '{"channel_id":1001,"data_type":"T","point_id":1,"operator":"<","threshold":0,"level":1,"message":"low"}' >/dev/null
eq two-rules "$($R HGET alarm:index:1001:T 1 | wc -l)" 2
W comsrv:1001:T '{"1":-5}' >/dev/null
eq both-change "$(EV)/$($R HEXISTS alarm:active hot)/$($R HEXISTS alarm:active low)" "5/0/1"
for o in ">= 10 10 1" "<= 10 10 1" "== 3 3 1" "!= 3 3 0" "> 10 10 0" "< 10 10 0"; do
  set -- $o; $R DEL alarm:active >/dev/null
  RS op '{"channel_id":7,"data_type":"S","point_id":1,"operator":"'"$1"'","threshold":'"$2"'}' >/dev/null
  W comsrv:7:S "{\"1\":$3}" >/dev/null; eq "op $1" "$($R HEXISTS alarm:active op)" "$4"
  RD op >/dev/null
done
# a rule saved while its point is already past the threshold triggers at once
W comsrv:7:T '{"5":50}' >/dev/null; n=$(EV)
eq save-triggers "$(RS now '{"channel_id":7,"data_type":"T","point_id":5,"operator":">","threshold":40}')" 1
eq save-triggers-ev "$(EV)/$(LE status)/$(LE level)/$(LE message)" "$((n+1))/1/0/"
# moving an active rule to another point ends its alarm; disabling does too
eq move-recovers "$(RS now '{"channel_id":7,"data_type":"T","point_id":6,"operator":">","threshold":40}')" 1
eq move-ev "$(LE status)/$(LE point_id)/$(LE value)" "0/5/50"
eq move-index "$($R HEXISTS alarm:index:7:T 5)/$($R HGET alarm:index:7:T 6)" "0/now > 40 0 0"
W comsrv:7:T '{"6":41}' >/dev/null; eq moved-triggers "$($R HEXISTS alarm:active now)" 1
eq disable-recovers "$(RS now '{"channel_id":7,"data_type":"T","point_id":6,"operator":">","threshold":40,"enabled":false}')/$($R HEXISTS alarm:index:7:T 6)/$($R HEXISTS alarm:active now)" "1/0/0"
W comsrv:7:T '{"6":99}' >/dev/null; eq disabled-silent "$($R HEXISTS alarm:active now)" 0
# deleting an active rule ends its alarm
RS del '{"channel_id":7,"data_type":"T","point_id":6,"operator":">","threshold":40}' >/dev/null
eq del-active "$($R HEXISTS alarm:active del)" 1; n=$(EV)
eq del "$(RD del)/$(EV)/$(LE status)/$($R HEXISTS alarm:active del)/$($R EXISTS alarm:rule:del)/$($R HEXISTS alarm:index:7:T 6)" "1/$((n+1))/0/0/0/0"
# acknowledgement: once, recorded on the active alarm and appended as status "ack"
$R FLUSHALL >/dev/null
RS ack '{"channel_id":9,"data_type":"T","point_id":1,"operator":">","threshold":10,"level":2,"message":"m"}' >/dev/null
W comsrv:9:T '{"1":12.5}' >/dev/null
aid=$($R --raw HGET alarm:active ack | sed 's/.*"alarm_id":"\([^"]*\)".*/\1/')
ACK() { $R FCALL alarmsrv_ack 1 alarm:active "$1" "$2" | tr '\n' ' ' | sed 's/ $//'; }
n=$($R XLEN alarm:events)
ack1=$(ACK "$aid" olga)
has ack-new "$ack1" "olga"
has ack-new-flag "$ack1" " 1"
eq ack-event "$(LE status)/$(LE acknowledged_by)/$(LE alarm_id)/$(LE value)/$($R XLEN alarm:events)" "ack/olga/$aid/12.5/$((n+1))"
has ack-active "$($R HGET alarm:active ack)" '"acknowledged_by":"olga"'
has ack-active-kept "$($R HGET alarm:active ack)" '"value":12.5,'
has ack-again "$(ACK "$aid" vic)" "olga"
eq ack-once "$($R XLEN alarm:events)" "$((n+1))"
has ack-unknown "$(ACK ALM_999 olga)" "ALARM_NOT_FOUND"
has ack-bad "$(ACK nope olga)" "INVALID_PARAMETER alarm_id"
has ack-badkey "$($R FCALL alarmsrv_ack 1 alarm:x "$aid" olga)" "expects 1 key"
# the recovery of an acknowledged alarm ends it as usual
W comsrv:9:T '{"1":1}' >/dev/null
eq ack-recovered "$(LE status)/$($R HEXISTS alarm:active ack)" "0/0"
has ack-after-recovery "$(ACK "$aid" olga)" "ALARM_NOT_FOUND"
$R FLUSHALL >/dev/null
RS hot '{"channel_id":7,"data_type":"T","point_id":1,"operator":">","threshold":90,"level":2,"message":"Temperature exceeds threshold","deadband":2}' >/dev/null
# the id set: saved rules are in it, a deleted one is not; a rebuild finds rules saved before it
eq rules-set "$($R SISMEMBER alarm:rules hot)/$($R SISMEMBER alarm:rules del)" "1/0"
$R SREM alarm:rules hot >/dev/null; $R FCALL voltage_rebuild_hooks 0 >/dev/null
eq rules-rebuilt "$($R SISMEMBER alarm:rules hot)/$($R SISMEMBER alarm:rules del)" "1/0"
eq del-absent "$(RD del)" 0
# alarmsrv_check on its own: evaluates stored values (after a rule's threshold changed)
W comsrv:8:T '{"1":10,"2":10}' >/dev/null
RS chk '{"channel_id":8,"data_type":"T","point_id":2,"operator":">","threshold":50}' >/dev/null
$R HSET alarm:rule:chk threshold 5 >/dev/null; $R HSET alarm:index:8:T 2 "chk > 5 0 0" >/dev/null
eq check-all "$(AC comsrv:8:T)/$($R HEXISTS alarm:active chk)" "1/1"
eq check-again "$(AC comsrv:8:T 2)" 0
eq check-other "$(AC comsrv:8:T 1)/$(AC comsrv:9:T)" "0/0"
has check-badkey "$(AC comsrv:x:T)" "ERR invalid key"; has check-badpid "$(AC comsrv:8:T x)" "ERR invalid point id"
# rule validation: nothing saved
for j in '{"data_type":"T","point_id":1,"operator":">","threshold":1}' \
         '{"channel_id":0,"data_type":"T","point_id":1,"operator":">","threshold":1}' \
         '{"channel_id":1,"data_type":"X","point_id":1,"operator":">","threshold":1}' \
         '{"channel_id":1,"data_type":"T","point_id":-1,"operator":">","threshold":1}' \
         '{"channel_id":1,"data_type":"T","point_id":1,"operator":"=>","threshold":1}' \
         '{"channel_id":1,"data_type":"T","point_id":1,"operator":">","threshold":"1"}' \
         '{"channel_id":1,"data_type":"T","point_id":1,"operator":">","threshold":1,"level":4}' \
         '{"channel_id":1,"data_type":"T","point_id":1,"operator":">","threshold":1,"enabled":"yes"}' \
         '{"channel_id":1,"data_type":"T","point_id":1,"operator":">","threshold":1,"deadband":-1}' \
         '{"channel_id":1,"data_type":"T","point_id":1,"operator":">","threshold":1,"message":7}' \
         '[1]' 'nope'; do
  has "rule-bad $j" "$(RS bad "$j")" "ERR invalid rule"
done
eq rule-bad-nothing "$($R EXISTS alarm:rule:bad)/$($R EXISTS alarm:index:1:T)" "0/0"
has rule-badid "$(RS 'a b' '{}')" "ERR invalid key"; has rule-badid2 "$($R FCALL alarmsrv_rule_save 1 alarm:rules:x '{}')" "ERR invalid key"
has rule-nargs "$($R FCALL alarmsrv_rule_save 1 alarm:rule:x)" "ERR"
# a write of points without rules touches no alarm key
$R DEL alarm:seq >/dev/null; n=$(EV); W comsrv:5000:T '{"1":1e9}' >/dev/null
eq norule "$(EV)/$($R EXISTS alarm:seq)/$($R EXISTS alarm:index:5000:T)" "$n/0/0"
# the stream is capped (MAXLEN ~)
has events-capped "$($R XINFO STREAM alarm:events | tr '\n' ' ')" "length"
# ---- control commands: submit (validate, dedupe, queue, record), report, expire ----
$R FLUSHALL >/dev/null
# ids after a reset start at the clock (thousandths of a ms), above every earlier one
W comsrv:2001:A '{"20":50}' >/dev/null
first=$($R FCALL control_submit 1 comsrv:2001:A:TODO '{"point_id":20,"command_type":"set_value","value":1,"client_id":"c","instance":"gw0","timeout_ms":1000}' | head -1)
now=$($R TIME | head -1)
n=${first#CMD_}; [ "${#n}" -ge 16 ] && [ $((n / 1000000)) -ge $((now - 5)) ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL seq-from-clock $first at $now"; }
$R FLUSHALL >/dev/null
W comsrv:2001:A '{"20":50}' >/dev/null
again=$($R FCALL control_submit 1 comsrv:2001:A:TODO '{"point_id":20,"command_type":"set_value","value":1,"client_id":"c","instance":"gw0","timeout_ms":1000}' | head -1)
[ "${again#CMD_}" -gt "$n" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL seq-after-reset $again after $first"; }
# the rest of this section counts from CMD_1
$R FLUSHALL >/dev/null; $R SET cmd:seq 0 >/dev/null
SUB() { $R FCALL control_submit 1 "$1" "$2" | tr '\n' ' ' | sed 's/ $//'; }
REP() { $R FCALL control_report 1 "cmd:$1" "$2"; }
EXP() { $R FCALL control_expire 1 "cmd:pending:$1"; }
RES() { $R --raw XREVRANGE control:results + - COUNT 1 | awk -v f="$1" 'prev==f {print; exit} {prev=$0}'; }
W comsrv:2001:A '{"20":50}' >/dev/null; W comsrv:2001:C '{"1":0}' >/dev/null
C1='{"point_id":20,"command_type":"set_value","value":50.0,"client_id":"ui_1","request_id":"ctrl_001","instance":"gw1","timeout_ms":10000,"operator":"user_001","reason":"Production adjustment"}'
eq sub "$(SUB comsrv:2001:A:TODO "$C1")" "CMD_1 queued 0"
eq sub-todo "$($R LRANGE comsrv:2001:A:TODO 0 -1)" '{"command_id":"CMD_1","point_id":20,"value":50,"command_type":"set_value","deadline_ms":'"$($R HGET cmd:CMD_1 deadline)"'}'
eq sub-rec "$($R HGET cmd:CMD_1 status)/$($R HGET cmd:CMD_1 client_id)/$($R HGET cmd:CMD_1 request_id)/$($R HGET cmd:CMD_1 instance)/$($R HGET cmd:CMD_1 operator)" "queued/ui_1/ctrl_001/gw1/user_001"
ttl=$($R TTL cmd:CMD_1); [ "$ttl" -gt 86000 ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL cmd ttl $ttl"; }
eq sub-pending "$($R ZRANGE cmd:pending:gw1 0 -1)" CMD_1
# a retried request is the same command: queued once
eq dedup "$(SUB comsrv:2001:A:TODO "$C1")" "CMD_1 queued 1"
eq dedup-once "$($R LLEN comsrv:2001:A:TODO)/$($R GET cmd:seq)" "1/1"
eq other-client "$(SUB comsrv:2001:A:TODO "${C1/ui_1/ui_2}")" "CMD_2 queued 0"
eq no-request-id "$(SUB comsrv:2001:A:TODO '{"point_id":20,"command_type":"set_value","value":1,"client_id":"ui_1","instance":"gw1","timeout_ms":10000}')" "CMD_3 queued 0"
# validation: nothing queued
n=$($R LLEN comsrv:2001:A:TODO)
has unknown-ch "$(SUB comsrv:9999:A:TODO "${C1/ctrl_001/ctrl_x}")" "CHANNEL_NOT_FOUND"
has wrong-type "$(SUB comsrv:2001:C:TODO "$C1")" "INVALID_PARAMETER command_type"
has ctl-value "$(SUB comsrv:2001:C:TODO '{"point_id":1,"command_type":"control","value":2,"client_id":"c","instance":"gw1","timeout_ms":1000}')" "INVALID_PARAMETER value"
for j in '{"point_id":20,"command_type":"set_value","value":"5","client_id":"c","instance":"gw1","timeout_ms":1000}' \
         '{"point_id":-1,"command_type":"set_value","value":5,"client_id":"c","instance":"gw1","timeout_ms":1000}' \
         '{"point_id":20,"command_type":"set_value","value":5,"instance":"gw1","timeout_ms":1000}' \
         '{"point_id":20,"command_type":"set_value","value":5,"client_id":"c","instance":"g w","timeout_ms":1000}' \
         '{"point_id":20,"command_type":"set_value","value":5,"client_id":"c","instance":"gw1","timeout_ms":0}' \
         '{"point_id":20,"command_type":"set_value","value":1e400,"client_id":"c","instance":"gw1","timeout_ms":1000}' \
         'nope'; do
  has "sub-bad $j" "$(SUB comsrv:2001:A:TODO "$j")" "INVALID_PARAMETER"
done
has sub-badkey "$(SUB comsrv:2001:T:TODO "$C1")" "ERR invalid key"
# a point that does not exist: without a point table, one without a value in the channel's hash
has no-point "$(SUB comsrv:2001:A:TODO '{"point_id":1,"command_type":"set_value","value":5,"client_id":"c","instance":"gw1","timeout_ms":1000}')" "INVALID_PARAMETER point_id: channel 2001 has no point A:1"
has no-point-c "$(SUB comsrv:2001:C:TODO '{"point_id":2,"command_type":"control","value":1,"client_id":"c","instance":"gw1","timeout_ms":1000}')" "INVALID_PARAMETER point_id"
eq sub-nothing "$($R LLEN comsrv:2001:A:TODO)/$($R EXISTS comsrv:9999:A:TODO)/$($R LLEN comsrv:2001:C:TODO)" "$n/0/0"
eq no-phantom "$($R HEXISTS comsrv:2001:A 1)/$($R GET cmd:seq)" "0/3"
eq ctl-ok "$(SUB comsrv:2001:C:TODO '{"point_id":1,"command_type":"control","value":1,"client_id":"c","instance":"gw1","timeout_ms":1000}')" "CMD_4 queued 0"
# report: executed writes the actual value through the write path and appends one result
seq0=$($R GET netsrv:seq)
eq report "$(REP CMD_1 '{"success":true,"actual_value":50.0}')" executed
eq report-rec "$($R HGET cmd:CMD_1 status)/$($R HGET cmd:CMD_1 actual_value)/$($R ZSCORE cmd:pending:gw1 CMD_1)" "executed/50/"
eq report-write "$($R HGET comsrv:2001:A 20)/$($R GET netsrv:seq)" "50/$((seq0+1))"
eq report-result "$(RES command_id)/$(RES status)/$(RES success)/$(RES actual_value)/$(RES instance)/$(RES client_id)/$(RES request_id)" "CMD_1/executed/1/50/gw1/ui_1/ctrl_001"
eq report-again "$(REP CMD_1 '{"success":false}')/$($R XLEN control:results)/$($R HGET cmd:CMD_1 status)" "executed/1/executed"
has report-late-recorded "$($R HGET cmd:CMD_1 late_result)" '"success":false'
eq failed "$(REP CMD_2 '{"success":false,"message":"device busy"}')/$(RES status)/$(RES message)" "failed/failed/device busy"
has report-unknown "$(REP CMD_99 '{"success":true}')" "COMMAND_NOT_FOUND"
has report-bad "$(REP CMD_3 '{"ok":1}')" "INVALID_PARAMETER"; has report-bad2 "$(REP CMD_3 '{"success":true,"actual_value":"x"}')" "INVALID_PARAMETER"
# expire: a command past its deadline times out exactly once; a late report changes nothing
eq expire-none "$(EXP gw1)" 0
$R HSET cmd:CMD_3 deadline 1 >/dev/null; $R ZADD cmd:pending:gw1 1 CMD_3 >/dev/null
eq expire "$(EXP gw1)/$($R HGET cmd:CMD_3 status)/$(RES status)/$(RES command_id)" "1/timeout/timeout/CMD_3"
eq expire-once "$(EXP gw1)/$($R XLEN control:results)" "0/3"
eq late "$(REP CMD_3 '{"success":true,"actual_value":1}')/$($R XLEN control:results)/$($R HGET comsrv:2001:A 20)" "timeout/3/50"
# a report after the deadline before the sweep ran: timeout, once
$R HSET cmd:CMD_4 deadline 1 >/dev/null
eq report-expired "$(REP CMD_4 '{"success":true}')/$(RES status)/$(RES command_id)/$($R XLEN control:results)" "timeout/timeout/CMD_4/4"
eq expire-after "$(EXP gw1)/$($R XLEN control:results)" "0/4"
# the audit log: one entry per queued command (who, what, from where), one per ending
AUD() { $R --raw XRANGE audit:control - + | awk -v id="$1" -v ev="$2" -v f="$3" '
  $0=="command_id" {getline; cid=$0} $0=="event" {getline; e=$0}
  $0==f {getline; v=$0} /^[0-9]+-[0-9]+$/ {if (cid==id && e==ev && done=="") {print v; done=1}; cid=""; e=""; v=""}
  END {if (cid==id && e==ev && done=="") print v}'; }
C5='{"point_id":20,"command_type":"set_value","value":7,"client_id":"ui_9","instance":"gw1","timeout_ms":10000,"operator":"olga","reason":"audit me","source":"192.0.2.7"}'
eq audit-sub "$(SUB comsrv:2001:A:TODO "$C5")" "CMD_5 queued 0"
eq audit-queued "$(AUD CMD_5 queued operator)/$(AUD CMD_5 queued source)/$(AUD CMD_5 queued value)/$(AUD CMD_5 queued reason)/$(AUD CMD_5 queued channel_id)" "olga/192.0.2.7/7/audit me/2001"
eq audit-rec-source "$($R HGET cmd:CMD_5 source)" "192.0.2.7"
REP CMD_5 '{"success":true,"actual_value":7}' >/dev/null
eq audit-ended "$(AUD CMD_5 executed operator)/$(AUD CMD_5 executed success)/$(AUD CMD_5 executed actual_value)" "olga/1/7"
eq audit-timeout "$(AUD CMD_3 timeout point_id)/$(AUD CMD_4 timeout data_type)" "20/C"
eq audit-dedup "$(SUB comsrv:2001:A:TODO "$C1")/$($R XLEN audit:control)" "CMD_1 executed 1/$($R XLEN audit:control)"
has audit-bad-source "$(SUB comsrv:2001:A:TODO "${C5/192.0.2.7/$(printf 'x%.0s' $(seq 300))}")" "INVALID_PARAMETER source"
# the point table's limits (cfg:points:{ch}): outside them nothing is queued
$R HSET cfg:points:2001 A:20 '{"data_type":"A","point_id":20,"name":"sp","unit":"kW","scale":1,"min":0,"max":100}' >/dev/null
n=$($R LLEN comsrv:2001:A:TODO)
has limit-high "$(SUB comsrv:2001:A:TODO '{"point_id":20,"command_type":"set_value","value":100.5,"client_id":"c","instance":"gwl","timeout_ms":1000}')" "INVALID_PARAMETER value: 100.5 is outside [0, 100]"
has limit-low "$(SUB comsrv:2001:A:TODO '{"point_id":20,"command_type":"set_value","value":-1,"client_id":"c","instance":"gwl","timeout_ms":1000}')" "INVALID_PARAMETER value"
eq limit-nothing "$($R LLEN comsrv:2001:A:TODO)" "$n"
has limit-ok "$(SUB comsrv:2001:A:TODO '{"point_id":20,"command_type":"set_value","value":100,"client_id":"c","instance":"gwl","timeout_ms":1000}')" "queued"
$R HSET cfg:points:2001 A:20 '{"data_type":"A","point_id":20,"name":"sp","unit":"kW","scale":1,"min":null,"max":null}' >/dev/null
has limit-none "$(SUB comsrv:2001:A:TODO '{"point_id":20,"command_type":"set_value","value":1e6,"client_id":"c","instance":"gwl","timeout_ms":1000}')" "queued"
# with a point table, only its points take commands: A:7 has a value but is not declared
W comsrv:2001:A '{"7":1}' >/dev/null; n=$($R LLEN comsrv:2001:A:TODO)
has undeclared "$(SUB comsrv:2001:A:TODO '{"point_id":7,"command_type":"set_value","value":1,"client_id":"c","instance":"gwl","timeout_ms":1000}')" "INVALID_PARAMETER point_id: point A:7 is not declared in the point table of channel 2001"
# ... and a declared point takes them before its first value
$R HSET cfg:points:2001 A:30 '{"data_type":"A","point_id":30,"name":"q","unit":"kvar","scale":1,"min":null,"max":null}' >/dev/null
has declared-novalue "$(SUB comsrv:2001:A:TODO '{"point_id":30,"command_type":"set_value","value":2,"client_id":"c","instance":"gwl","timeout_ms":1000}')" "queued"
eq undeclared-nothing "$($R LLEN comsrv:2001:A:TODO)" "$((n+1))"
$R DEL cfg:points:2001 >/dev/null
# instances keep their own pending sets
SUB comsrv:2001:A:TODO '{"point_id":20,"command_type":"set_value","value":3,"client_id":"c","instance":"gw2","timeout_ms":1000}' >/dev/null
eq instances "$($R ZCARD cmd:pending:gw2)/$($R ZCARD cmd:pending:gw1)" "1/0"
has expire-badkey "$($R FCALL control_expire 1 cmd:x)" "ERR"
# ---- models: modsrv_model_save/_delete, modsrv_calculate, evaluation inside writes ----
$R FLUSHALL >/dev/null
MS() { $R FCALL modsrv_model_save 1 "model:$1" "$2"; }
pt() { echo "{\"channel_id\":$1,\"data_type\":\"${3:-T}\",\"point_id\":$2}"; }
W comsrv:11:T '{"1":10,"2":20.5}' >/dev/null; W comsrv:12:T '{"1":5}' >/dev/null
eq m-sum "$(MS total "{\"output\":$(pt 900 1),\"op\":\"sum\",\"inputs\":[$(pt 11 1),$(pt 11 2),$(pt 12 1)]}")" 35.5
eq m-written "$($R HGET comsrv:900:T 1)" 35.5
eq m-index "$($R HGET model:index:11:T 1)/$($R HGET model:index:12:T 1)" "total/total"
# a write of an input recomputes the output in the same call (one seq per hash written)
seq0=$($R GET netsrv:seq); W comsrv:12:T '{"1":6}' >/dev/null
eq m-follow "$($R HGET comsrv:900:T 1)/$($R GET netsrv:seq)" "36.5/$((seq0+2))"
eq m-avg "$(MS avg "{\"output\":$(pt 900 2),\"op\":\"avg\",\"inputs\":[$(pt 11 1),$(pt 11 2)]}")" 15.25
eq m-min "$(MS mn "{\"output\":$(pt 900 3),\"op\":\"min\",\"inputs\":[$(pt 11 1),$(pt 11 2),$(pt 12 1)]}")" 6
eq m-max "$(MS mx "{\"output\":$(pt 900 4),\"op\":\"max\",\"inputs\":[$(pt 11 1),$(pt 11 2),$(pt 12 1)]}")" 20.5
eq m-scale "$(MS kw "{\"output\":$(pt 900 5),\"op\":\"scale\",\"inputs\":[$(pt 11 1)],\"scale\":0.001,\"offset\":1}")" 1.01
eq m-diff "$(MS df "{\"output\":$(pt 900 6),\"op\":\"diff\",\"inputs\":[$(pt 11 2),$(pt 11 1)]}")" 10.5
# a model's output feeding another model, evaluated in the same call
eq m-chain "$(MS chain "{\"output\":$(pt 901 1),\"op\":\"scale\",\"inputs\":[$(pt 900 1)],\"scale\":2}")" 73
W comsrv:11:T '{"1":11}' >/dev/null
eq m-chain-follow "$($R HGET comsrv:900:T 1)/$($R HGET comsrv:901:T 1)" "37.5/75"
# cycles are refused when saved (direct, and through another model)
has m-self "$(MS self "{\"output\":$(pt 902 1),\"op\":\"sum\",\"inputs\":[$(pt 902 1)]}")" "INVALID_PARAMETER inputs"
has m-cycle "$(MS back "{\"output\":$(pt 11 1),\"op\":\"scale\",\"inputs\":[$(pt 901 1)]}")" "cycle"
eq m-cycle-nothing "$($R EXISTS model:back)/$($R HGET comsrv:11:T 1)" "0/11"
# an input without a number: the output is removed (never stale), and comes back with it
W comsrv:12:T '{"1":"n/a"}' >/dev/null
eq m-missing "$($R HEXISTS comsrv:900:T 1)/$($R HEXISTS comsrv:901:T 1)" "0/0"
W comsrv:12:T '{"1":1}' >/dev/null
eq m-back "$($R HGET comsrv:900:T 1)/$($R HGET comsrv:901:T 1)" "32.5/65"
W comsrv:777:T '{"2":1}' >/dev/null
eq m-missing-save "$(MS ghost "{\"output\":$(pt 903 1),\"op\":\"sum\",\"inputs\":[$(pt 777 1)]}")/$($R HEXISTS comsrv:903:T 1)" "/0"
has m-unknown-channel "$(MS ghost2 "{\"output\":$(pt 903 2),\"op\":\"sum\",\"inputs\":[$(pt 778 1)]}")" "inputs[1].channel_id: channel 778 not found"
eq m-ids "$($R SISMEMBER model:ids total)/$($R SISMEMBER model:ids ghost2)" "1/0"
# modsrv_calculate on its own
$R HSET comsrv:11:T 1 100 >/dev/null
eq m-calc "$($R FCALL modsrv_calculate 1 model:total)/$($R HGET comsrv:900:T 1)" "121.5/121.5"
# validation: nothing saved
for j in '{"op":"sum","inputs":[{"channel_id":1,"point_id":1}]}' \
         "{\"output\":$(pt 905 1),\"op\":\"median\",\"inputs\":[$(pt 11 1)]}" \
         "{\"output\":$(pt 905 1),\"op\":\"sum\",\"inputs\":[]}" \
         "{\"output\":$(pt 905 1),\"op\":\"diff\",\"inputs\":[$(pt 11 1)]}" \
         "{\"output\":$(pt 905 1),\"op\":\"scale\",\"inputs\":[$(pt 11 1)],\"scale\":\"x\"}" \
         "{\"output\":$(pt 905 1),\"op\":\"sum\",\"inputs\":[{\"channel_id\":0,\"point_id\":1}]}" \
         'nope'; do
  has "m-bad $j" "$(MS bad "$j")" "INVALID_PARAMETER"
done
eq m-bad-nothing "$($R EXISTS model:bad)/$($R EXISTS comsrv:905:T)" "0/0"
has m-badkey "$($R FCALL modsrv_model_save 1 model:index '{}')" "ERR invalid key"
# delete: index cleaned, output removed; disabling removes the output too
eq m-del "$($R FCALL modsrv_model_delete 1 model:chain)/$($R HEXISTS comsrv:901:T 1)/$($R HGET model:index:900:T 1)" "1/0/"
eq m-del-absent "$($R FCALL modsrv_model_delete 1 model:chain)" 0
MS df "{\"output\":$(pt 900 6),\"op\":\"diff\",\"inputs\":[$(pt 11 2),$(pt 11 1)],\"enabled\":false}" >/dev/null
eq m-disabled "$($R HEXISTS comsrv:900:T 6)/$($R HGET model:index:11:T 2 | grep -c df)" "0/0"
# a write of points that feed no model touches no model key
n=$($R GET netsrv:seq); W comsrv:5000:T '{"1":1}' >/dev/null; eq m-none "$($R GET netsrv:seq)" $((n+1))
# ---- automation rules: rulesrv_rule_save/_delete, rulesrv_evaluate, evaluation inside writes ----
$R FLUSHALL >/dev/null
RUS() { $R FCALL rulesrv_rule_save 1 "rule:$1" "$2"; }
FI() { $R XLEN rule:firings; }
LF() { $R --raw XREVRANGE rule:firings + - COUNT 1 | awk -v f="$1" 'prev==f {print; exit} {prev=$0}'; }
W comsrv:2001:A '{"20":50}' >/dev/null; W comsrv:3001:T '{"30":25,"31":10}' >/dev/null
HOT='{"conditions":[{"channel_id":3001,"data_type":"T","point_id":30,"operator":">","threshold":32}],"action":{"type":"control","channel_id":2001,"point_id":20,"command_type":"set_value","value":20},"cooldown_ms":0}'
eq rule-save "$(RUS cool "$HOT")" OK
eq rule-index "$($R HGET rule:index:3001:T 30)/$($R HGET rule:cool _state)" "cool/0"
W comsrv:3001:T '{"30":33}' >/dev/null
eq rule-fired "$(FI)/$(LF rule_id)/$(LF action)/$(LF result)/$(LF values)" "1/cool/control/queued/3001:T:30=33"
cid=$(LF command_id)
eq rule-cmd "$($R HGET cmd:$cid origin)/$($R HGET cmd:$cid client_id)/$($R HGET cmd:$cid instance)/$($R HGET cmd:$cid value)" "rule:cool/rule:cool/rules/20"
has rule-todo "$($R LRANGE comsrv:2001:A:TODO 0 -1)" "\"command_id\":\"$cid\""
# still true: no second firing; false then true again: fires again
W comsrv:3001:T '{"30":34}' >/dev/null; eq rule-level "$(FI)" 1
W comsrv:3001:T '{"30":30}' >/dev/null; W comsrv:3001:T '{"30":35}' >/dev/null; eq rule-edge "$(FI)" 2
# cooldown: a new rising edge inside the cooldown does not fire
RUS cool "${HOT/\"cooldown_ms\":0/\"cooldown_ms\":60000}" >/dev/null
W comsrv:3001:T '{"30":30}' >/dev/null; W comsrv:3001:T '{"30":36}' >/dev/null
eq rule-cooldown "$(FI)" 2
# all / any, and an event action
RUS both '{"conditions":[{"channel_id":3001,"point_id":30,"operator":">","threshold":32},{"channel_id":3001,"point_id":31,"operator":"<","threshold":5}],"match":"all","action":{"type":"event","message":"hot and low","level":2}}' >/dev/null
W comsrv:3001:T '{"31":4}' >/dev/null
eq rule-all "$(FI)/$(LF rule_id)/$(LF action)/$(LF message)/$(LF level)" "3/both/event/hot and low/2"
RUS either '{"conditions":[{"channel_id":3001,"point_id":31,"operator":">","threshold":100},{"channel_id":3001,"point_id":30,"operator":"<","threshold":0}],"match":"any","action":{"type":"event"}}' >/dev/null
W comsrv:3001:T '{"31":101}' >/dev/null; eq rule-any "$(LF rule_id)" either
# a missing point is a false condition; disabled rules never fire
W comsrv:3001:T '{"31":"n/a"}' >/dev/null
eq rule-missing-false "$($R HGET rule:either _state)" 0
RUS either '{"conditions":[{"channel_id":3001,"point_id":31,"operator":">","threshold":100}],"action":{"type":"event"},"enabled":false}' >/dev/null
n=$(FI); W comsrv:3001:T '{"31":200}' >/dev/null; eq rule-disabled "$(FI)/$($R HGET rule:index:3001:T 31 | grep -c either)" "$n/0"
# a control action on a channel that does not exist is recorded as an error, nothing queued
has rule-ghost-refused "$(RUS ghost '{"conditions":[{"channel_id":3001,"point_id":31,"operator":">","threshold":300}],"action":{"type":"control","channel_id":4242,"point_id":1,"command_type":"set_value","value":1}}')" "action.channel_id: channel 4242 not found"
W comsrv:4242:T '{"1":1}' >/dev/null
RUS ghost '{"conditions":[{"channel_id":3001,"point_id":31,"operator":">","threshold":300}],"action":{"type":"control","channel_id":4242,"point_id":1,"command_type":"set_value","value":1}}' >/dev/null
$R DEL comsrv:4242:T >/dev/null
W comsrv:3001:T '{"31":301}' >/dev/null
has rule-ghost "$(LF result)" "CHANNEL_NOT_FOUND"; eq rule-ghost-nothing "$($R EXISTS comsrv:4242:A:TODO)" 0
# ... and one on a point the channel does not have (2001 A:21): an error, nothing queued
RUS phantom '{"conditions":[{"channel_id":3001,"point_id":31,"operator":">","threshold":400}],"action":{"type":"control","channel_id":2001,"point_id":21,"command_type":"set_value","value":1}}' >/dev/null
n=$($R LLEN comsrv:2001:A:TODO); W comsrv:3001:T '{"31":401}' >/dev/null
has rule-phantom "$(LF rule_id)/$(LF result)" "phantom/error: ERR INVALID_PARAMETER point_id"
eq rule-phantom-nothing "$($R LLEN comsrv:2001:A:TODO)/$($R HEXISTS comsrv:2001:A 21)" "$n/0"
has rule-unknown-cond "$(RUS u '{"conditions":[{"channel_id":6666,"point_id":1,"operator":">","threshold":1}],"action":{"type":"event"}}')" "conditions[1].channel_id: channel 6666 not found"
eq rule-ids "$($R SISMEMBER rule:ids ghost)" 1
# rulesrv_evaluate on its own (after a value changed behind the write path)
RUS manual '{"conditions":[{"channel_id":3001,"point_id":31,"operator":"<","threshold":0}],"action":{"type":"event"}}' >/dev/null
$R HSET comsrv:3001:T 31 -1 >/dev/null
eq rule-eval "$($R FCALL rulesrv_evaluate 1 rule:manual)/$(LF rule_id)" "1/manual"
eq rule-eval-again "$($R FCALL rulesrv_evaluate 1 rule:manual)" 0
# validation: nothing saved
for j in '{"action":{"type":"event"}}' \
         '{"conditions":[{"channel_id":1,"point_id":1,"operator":"=>","threshold":1}],"action":{"type":"event"}}' \
         '{"conditions":[{"channel_id":1,"point_id":1,"operator":">","threshold":"x"}],"action":{"type":"event"}}' \
         '{"conditions":[{"channel_id":1,"point_id":1,"operator":">","threshold":1}],"action":{"type":"shout"}}' \
         '{"conditions":[{"channel_id":1,"point_id":1,"operator":">","threshold":1}],"action":{"type":"control","channel_id":1,"point_id":1,"command_type":"control","value":5}}' \
         '{"conditions":[{"channel_id":1,"point_id":1,"operator":">","threshold":1}],"match":"some","action":{"type":"event"}}' \
         '{"conditions":[{"channel_id":1,"point_id":1,"operator":">","threshold":1}],"cooldown_ms":-1,"action":{"type":"event"}}' \
         '{"conditions":[{"channel_id":3001,"point_id":31,"operator":">","threshold":1e9}],"match":false,"action":{"type":"event"}}' \
         '{"conditions":[{"channel_id":3001,"point_id":31,"operator":">","threshold":1e9}],"cooldown_ms":false,"action":{"type":"event"}}' \
         'nope'; do
  has "rule-bad $j" "$(RUS bad "$j")" "INVALID_PARAMETER"
done
# null is an absent optional field (its default), false is not
eq rule-nulls "$(RUS nulls '{"conditions":[{"channel_id":3001,"point_id":31,"operator":">","threshold":1e9}],"match":null,"cooldown_ms":null,"enabled":null,"action":{"type":"event"}}')/$($R HMGET rule:nulls match cooldown_ms enabled | tr '\n' ' ')" "OK/all 0 1 "
$R FCALL rulesrv_rule_delete 1 rule:nulls >/dev/null
eq rule-bad-nothing "$($R EXISTS rule:bad)" 0
eq rule-del "$($R FCALL rulesrv_rule_delete 1 rule:cool)/$($R HGET rule:index:3001:T 30 | grep -c cool)/$($R FCALL rulesrv_rule_delete 1 rule:cool)" "1/0/0"
# ---- forwarding: netsrv_forward_save/_delete, netsrv_forward_data, appended with writes ----
$R FLUSHALL >/dev/null
FS() { $R FCALL netsrv_forward_save 1 "forward:$1" "$2"; }
ST() { echo "$($R HGET forward:$1:stats appended)/$($R HGET forward:$1:stats trimmed)/$($R XLEN forward:$1:stream)"; }
has fwd-unknown "$(FS cloud '{"channels":[1001]}')" "channels[1]: channel 1001 not found"
W comsrv:1001:S '{"9":0}' >/dev/null
eq fwd-save "$(FS cloud '{"channels":[1001],"data_types":["T"],"maxlen":100}')" OK
eq fwd-names "$($R SMEMBERS forward:names)" cloud
eq fwd-dest "$($R HGET forward:destinations cloud)" "1001|T|100"
W comsrv:1001:T '{"1":25.6,"2":"on"}' 1700000000 >/dev/null
eq fwd-append "$(ST cloud)" "1//1"
eq fwd-entry "$($R --raw XRANGE forward:cloud:stream - + | tr '\n' ' ')" "$($R --raw XRANGE forward:cloud:stream - + | head -1) channel_id 1001 data_type T values {\"1\":25.6,\"2\":\"on\"} ts 1700000000 "
# other channels and types are not forwarded
W comsrv:1001:S '{"1":1}' >/dev/null; W comsrv:1002:T '{"1":1}' >/dev/null; eq fwd-filter "$(ST cloud)" "1//1"
# every channel, capped: the cap holds and the trimmed entries are counted
FS all '{"maxlen":1}' >/dev/null
for i in $(seq 1 300); do W comsrv:7:T "{\"1\":$i}" >/dev/null; done
app=$($R HGET forward:all:stats appended); trim=$($R HGET forward:all:stats trimmed); len=$($R XLEN forward:all:stream)
eq fwd-counts "$app/$((trim + len))" "300/300"
[ "$len" -le 200 ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL fwd-cap: $len entries for maxlen 1"; }
# a direct payload
eq fwd-direct "$($R FCALL netsrv_forward_data 1 forward:cloud 'hello northbound')/$($R HGET forward:cloud:stats appended)" "1/2"
has fwd-direct-missing "$($R FCALL netsrv_forward_data 1 forward:nobody x)" "NOT_FOUND"
# disabled: kept, not fed; deleted: gone with its stream and counters
FS cloud '{"channels":[1001],"enabled":false}' >/dev/null
W comsrv:1001:T '{"1":1}' >/dev/null; eq fwd-disabled "$($R HEXISTS forward:destinations cloud)/$($R HGET forward:cloud:stats appended)" "0/2"
eq fwd-del "$($R FCALL netsrv_forward_delete 1 forward:cloud)/$($R EXISTS forward:cloud forward:cloud:stream forward:cloud:stats)" "1/0"
eq fwd-nulls "$(FS nulls '{"channels":null,"data_types":null,"maxlen":null,"enabled":null}')/$($R HMGET forward:nulls channels data_types maxlen enabled | tr '\n' ' ')" "OK/* TSCA 10000 1 "
$R FCALL netsrv_forward_delete 1 forward:nulls >/dev/null
for j in '{"channels":[0]}' '{"data_types":["X"]}' '{"data_types":[]}' '{"maxlen":0}' '{"maxlen":false}' '{"enabled":"yes"}' 'nope'; do
  has "fwd-bad $j" "$(FS bad "$j")" "INVALID_PARAMETER"
done
has fwd-badkey "$($R FCALL netsrv_forward_save 1 forward:destinations '{}')" "ERR invalid key"
# ---- lib:hooks: which hooks a written hash has; rebuilt from the indexes ----
eq hooks-mask "$($R HGET lib:hooks 1001:T)/$($R HGET lib:hooks 7:T)/$($R HGET lib:hooks '*')" "//F"
$R FCALL alarmsrv_rule_save 1 alarm:rule:hk '{"channel_id":7,"data_type":"T","point_id":1,"operator":">","threshold":1000}' >/dev/null
$R FCALL modsrv_model_save 1 model:hk '{"output":{"channel_id":7,"point_id":99},"op":"scale","inputs":[{"channel_id":7,"point_id":1}]}' >/dev/null
eq hooks-am "$($R HGET lib:hooks 7:T)" AM
$R DEL lib:hooks >/dev/null; W comsrv:7:T '{"1":2000}' >/dev/null
eq hooks-missing-skips "$($R HEXISTS alarm:active hk)" 0
eq hooks-rebuild "$($R FCALL voltage_rebuild_hooks 0)/$($R HGET lib:hooks 7:T)/$($R HGET lib:hooks '*')" "1/AM/F"
W comsrv:7:T '{"1":2001}' >/dev/null
eq hooks-back "$($R HEXISTS alarm:active hk)/$($R HGET comsrv:7:T 99)" "1/2001"
$R FCALL modsrv_model_delete 1 model:hk >/dev/null; $R FCALL alarmsrv_rule_delete 1 alarm:rule:hk >/dev/null
eq hooks-gone "$($R HEXISTS lib:hooks 7:T)" 0
# ---- acks waiting for their sender, the site-wide sweep, client ids across gateways ----
$R FLUSHALL >/dev/null
W comsrv:2001:A '{"20":50}' >/dev/null
Q() { $R FCALL control_submit 1 comsrv:2001:A:TODO "{\"point_id\":20,\"command_type\":\"set_value\",\"value\":1,\"client_id\":\"$1\",\"instance\":\"$2\",\"timeout_ms\":1,\"operator\":\"$3\"}" | head -1; }
c1=$(Q ui_9 gwdead olga); c2=$(Q ui_9 gwdead vic); c3=$(Q 'http~olga' gwdead olga); c4=$(Q ui_9 rules olga)
eq instances "$($R SMEMBERS cmd:instances | sort | tr '\n' ' ')" "gwdead rules "
sleep 0.01
eq expire-all "$($R FCALL control_expire_all 0)" 4
eq expire-once "$($R FCALL control_expire_all 0)/$($R SCARD cmd:instances)" "0/0"
eq acks-parked "$($R LLEN ctl:acks:ui_9)/$($R EXISTS ctl:acks:http~olga)" "3/0"
ttl=$($R PTTL ctl:acks:ui_9); [ "$ttl" -gt 100000 ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL acks ttl $ttl"; }
taken=$($R FCALL control_acks_take 1 ctl:acks:ui_9 olga | tr '\n' ' ')
has take-olga "$taken" "$c1"; has take-olga-2 "$taken" "$c4"; has take-status "$taken" "status timeout"
case "$taken" in *"$c2"*) fail=$((fail+1)); echo "FAIL take gave vic's ack to olga";; *) pass=$((pass+1));; esac
eq take-keeps-vic "$($R LLEN ctl:acks:ui_9)" 1
eq take-again "$($R FCALL control_acks_take 1 ctl:acks:ui_9 olga)" ""
# taken acks a connection could not deliver go back in front, in order; the holder is told
e1=$($R XRANGE control:results - + | sed -n 1p); e2=$($R XRANGE control:results - + COUNT 2 | grep -E '^[0-9]+-[0-9]+$' | sed -n 2p)
vicitem=$($R LINDEX ctl:acks:ui_9 0); $R DEL ctl:acks:ui_9 >/dev/null; $R RPUSH ctl:acks:ui_9 "9-9 vic" >/dev/null
eq return-unheld "$($R FCALL control_acks_return 2 ctl:acks:ui_9 gw:client:ui_9 tOld "$e1" olga "$e2" '')" 0
eq return-order "$($R LRANGE ctl:acks:ui_9 0 -1 | tr '\n' '|')" "$e1 olga|$e2 |9-9 vic|"
$R SET gw:client:ui_9 "gwN tNew olga" >/dev/null
eq return-same-token "$($R FCALL control_acks_return 2 ctl:acks:ui_9 gw:client:ui_9 tNew "$e1" olga)" 0
eq return-tells-holder "$($R FCALL control_acks_return 2 ctl:acks:ui_9 gw:client:ui_9 tOld "$e1" olga)" 1
back=$($R FCALL control_acks_take 1 ctl:acks:ui_9 olga | tr '\n' ' ')
has return-taken "$back" "$e1"; has return-taken-2 "$back" "$e2"
has return-badkey "$($R FCALL control_acks_return 2 ctl:acks:ui_9 gw:client:x t "$e1" o)" "ERR control_acks_return expects 2 keys"
has return-badpair "$($R FCALL control_acks_return 2 ctl:acks:ui_9 gw:client:ui_9 t "$e1")" "ERR control_acks_return expects"
has return-badid "$($R FCALL control_acks_return 2 ctl:acks:ui_9 gw:client:ui_9 t nope o)" "pair 1 is not"
$R DEL ctl:acks:ui_9 gw:client:ui_9 >/dev/null; $R RPUSH ctl:acks:ui_9 "$vicitem" >/dev/null
# a claim: free -> ok with the acks for that user; same user elsewhere -> ok + message; other user -> held
eq claim-held-none "$($R FCALL netsrv_client_claim 1 gw:client:ui_9 gwA tA vic 60000 | head -1)" ok
eq claim-took-vic "$($R LLEN ctl:acks:ui_9)" 0
eq claim-value "$($R GET gw:client:ui_9)" "gwA tA vic"
eq claim-other-user "$($R FCALL netsrv_client_claim 1 gw:client:ui_9 gwB tB olga 60000 | tr '\n' ' ')" "held vic "
# the takeover publishes to the holder's channel (count of receivers: none subscribed here)
eq claim-takeover "$($R FCALL netsrv_client_claim 1 gw:client:ui_9 gwB tB vic 60000 | head -1)/$($R GET gw:client:ui_9)" "ok/gwB tB vic"
eq renew "$($R FCALL netsrv_client_renew 2 gw:client:ui_9 gw:client:nope 60000 'gwB tB vic' 'gwB tX vic')" ""
eq renew-remade "$($R GET gw:client:nope)" "gwB tX vic"; $R DEL gw:client:nope >/dev/null
eq renew-lost "$($R FCALL netsrv_client_renew 1 gw:client:ui_9 60000 'gwA tA vic')" "gw:client:ui_9"
has renew-badclaim "$($R FCALL netsrv_client_renew 1 gw:client:ui_9 60000 tA)" "is not"
eq release-other "$($R FCALL netsrv_client_release 1 gw:client:ui_9 tA)/$($R EXISTS gw:client:ui_9)" "0/1"
eq release "$($R FCALL netsrv_client_release 1 gw:client:ui_9 tB)/$($R EXISTS gw:client:ui_9)" "1/0"
has claim-bad "$($R FCALL netsrv_client_claim 1 gw:client:x 'a b' t u 1)" "ERR netsrv_client_claim: invalid"
has claim-badkey "$($R FCALL netsrv_client_claim 1 ctl:acks:x gw t u 1)" "ERR"
has renew-bad "$($R FCALL netsrv_client_renew 1 gw:client:x 0 'a b c')" "ERR netsrv_client_renew expects"
# ---- sessions: auth_login / auth_refresh / auth_logout ----
$R DEL auth:revocations >/dev/null
L() { $R FCALL auth_login 1 "auth:login:$1" "$2" "$3" "${4:-100}" "${5:-10000}" "${6:-1000}" "${7:-60000}"; }
F() { $R FCALL auth_refresh 1 "auth:login:$1" "$2" "$3" "${4:-2000}" 60000 | tr '\n' ' ' | sed 's/ $//'; }
eq login "$(L fam1 alice tokA)" ""
has login-hashed "$($R HGET auth:login:fam1 token)" "$($R EVAL "return redis.sha1hex('tokA')" 0)"
eq login-twice "$(L fam1 alice tokA 2>&1 | head -c 30)" "ERR auth_login: the family exi"
eq refresh-ok "$(F fam1 tokA tokB)" "ok alice"
eq refresh-used-up "$(F fam1 tokA tokC 3000)" "reused"
eq reuse-ends "$($R EXISTS auth:login:fam1)/$($R XLEN auth:revocations)" "0/1"
eq reuse-stream "$($R XRANGE auth:revocations - + | sed -n 3p)" "fam1"
eq refresh-after-end "$(F fam1 tokB tokD)" "unknown"
L fam2 alice t1 >/dev/null; eq forged "$(F fam2 forged x)" "unknown"; eq forged-keeps "$($R EXISTS auth:login:fam2)" 1
eq expired "$(F fam2 t1 t2 100000)" "expired"; eq expired-gone "$($R EXISTS auth:login:fam2)/$($R ZSCORE auth:users alice)" "0/"
# per-user bound: a user's 4th login ends their oldest, nobody else's
$R DEL auth:revocations >/dev/null
L b1 bob x1 >/dev/null; for i in 1 2 3; do L "a$i" alice "y$i" 3 10000 $((1000+i)) >/dev/null; done
eq per-user "$(L a4 alice y4 3 10000 1010)" a1; eq per-user-oldest "$($R EXISTS auth:login:a1)/$($R EXISTS auth:login:a2)/$($R EXISTS auth:login:b1)" "0/1/1"
eq per-user-count "$($R ZSCORE auth:users alice)/$($R ZSCORE auth:users bob)" "3/1"
# store full: the user holding the most loses their oldest
eq total "$(L b2 bob x2 100 4 1020)" a2; eq total-victim "$($R EXISTS auth:login:a2)/$($R EXISTS auth:login:b1)" "0/1"
# expired logins are swept by the next login
$R DEL auth:revocations >/dev/null
eq sweep "$(L c1 carol z 100 10000 9999999)" ""; eq sweep-gone "$($R ZCARD auth:logins)/$($R XLEN auth:revocations)" "1/0"
# logout: with the current or a used token, or with none (the access token); a forged one ends nothing
L d1 dave r1 100 10000 9999999 >/dev/null; F d1 r1 r2 9999999 >/dev/null
eq logout-forged "$($R FCALL auth_logout 1 auth:login:d1 nope 9999999)" 0; eq logout-forged-keeps "$($R EXISTS auth:login:d1)" 1
eq logout-used "$($R FCALL auth_logout 1 auth:login:d1 r1 9999999)" 1; eq logout-gone "$($R EXISTS auth:login:d1)" 0
eq logout-again "$($R FCALL auth_logout 1 auth:login:d1 r2 9999999)" 0
L d2 dave s1 100 10000 9999999 >/dev/null; eq logout-access "$($R FCALL auth_logout 1 auth:login:d2 9999999)" 1
eq logout-void "$($R FCALL auth_logout 1 auth:login:nosuch 9999999)/$($R XRANGE auth:revocations - + | grep -c nosuch)" "0/1"
has bad-key "$($R FCALL auth_login 1 auth:login:a-b u t 1 1 1 1)" "ERR auth_login expects 1 key"
has bad-user "$($R FCALL auth_login 1 auth:login:e1 'a b' t 1 1 1 1)" "ERR auth_login: invalid user"
has bad-ttl "$($R FCALL auth_refresh 1 auth:login:e1 t u 1 0)" "must be positive"
echo "pass=$pass fail=$fail"
[ "$fail" -eq 0 ]
