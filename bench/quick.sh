#!/bin/bash
# bench/quick.sh [N]: a one-domain quick run without a network namespace (loopback only):
# smtp-source -s 20 -m N (default 5000) into build/release/esad, routed to smtp-sink on
# 127.0.0.1:2727; prints inject and end-to-end msg/s, CPU ms per message, group-commit stats
# and peak RSS. Run as root from the repository root. The full comparison with Postfix is
# bench/run.
N=${1:-5000}
D=/var/tmp/qb; rm -rf $D; mkdir -p $D
pkill -f 'smtp-sink -u root -c 127.0.0.1:2727' ; sleep 0.2
/usr/sbin/smtp-sink -u root -c 127.0.0.1:2727 1000 > $D/sink.out 2>&1 &
SINK=$!
echo 'ALL [127.0.0.1]:2727' > $D/routes
cat > $D/esad.toml <<EOT
[daemon]
state_dir = "$D/state"
[listener]
address = "127.0.0.1:2699"
[routes]
file = "$D/routes"
[dns]
servers = ["127.0.0.1:9"]
[logging]
level = "warning"
EOT
build/release/esad --config $D/esad.toml > $D/esad.log 2>&1 &
PID=$!
for i in $(seq 50); do build/release/esactl --socket $D/state/run/esad.sock --json status 2>/dev/null | grep -q '"listener": "127' && break; sleep 0.1; done
c0=$(awk '{print $14+$15}' /proc/$PID/stat); t0=$(date +%s.%N)
/usr/sbin/smtp-source -s 20 -m $N -l 2048 -f a@src.test -t b@dst.test 127.0.0.1:2699
t1=$(date +%s.%N)
for i in $(seq 600); do a=$(build/release/esactl --socket $D/state/run/esad.sock --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["gauges"]["active_recipients"])'); [ "$a" = 0 ] && break; sleep 0.1; done
t2=$(date +%s.%N); c1=$(awk '{print $14+$15}' /proc/$PID/stat)
build/release/esactl --socket $D/state/run/esad.sock --json status | python3 -c 'import json,sys; d=json.load(sys.stdin); print("spool", d["spool"])'
python3 -c "print('inject %.0f msg/s, e2e %.0f msg/s, cpu %.3f ms/msg' % ($N/($t1-$t0), $N/($t2-$t0), ($c1-$c0)*10/$N))"
grep VmHWM /proc/$PID/status
kill $PID $SINK
