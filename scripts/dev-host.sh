#!/usr/bin/env bash
# Extra host agents on this machine, each in its own network namespace: a local fleet for trying and
# testing (docs/fleet.md). As root, after scripts/setup.sh.
#
#   WRENN_URL=http://127.0.0.1:8080 WRENN_REGISTRATION_TOKEN=<from POST /v1/hosts> \
#     scripts/dev-host.sh start NAME   # registers on first start; later starts reuse its credentials
#   scripts/dev-host.sh stop NAME      # SIGTERM: the agent destroys its running sandboxes, keeps paused ones
#   scripts/dev-host.sh kill NAME      # SIGKILL: everything stays for its next start to find
#   scripts/dev-host.sh rm NAME        # kill, then remove its namespace, rules and data
#   scripts/dev-host.sh partition NAME # drop all traffic on its link (both ways); `heal NAME` undoes it
#   scripts/dev-host.sh status NAME    # address, pid, log file
#   scripts/dev-host.sh list
#
# NAME is 1-4 lowercase letters or digits starting with a letter; it is also the agent's instance tag
# (WRENN_INSTANCE), so its slot namespaces, interfaces, firewall chains and cgroups carry it and no
# other agent's janitor touches them. Each dev host gets:
#   netns wdev-NAME, linked to the root namespace by veth wdh-NAME (10.98.K.1) <-> wdn-NAME (10.98.K.2)
#   the agent listening (mutual TLS) on 10.98.K.2:7070, slot subnet 10.(100+K).0.0/16
#   data dir $WRENN_DIR/dev-hosts/NAME (images and runsc shared with $WRENN_DIR), log agent.log there
# A control plane that listens on loopback is reached from the dev host at 10.98.K.1 (DNAT to
# 127.0.0.1 with route_localnet on the link); its sandboxes cannot reach it (10.0.0.0/8 is in
# every agent's egress deny list).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
WRENN_DIR=${WRENN_DIR:-/var/lib/wrenn}
hosts_dir="$WRENN_DIR/dev-hosts"
AGENT_PORT=7070

die() {
  echo "dev-host: $*" >&2
  exit 1
}

usage() {
  sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

[[ $(id -u) == 0 ]] || die "run as root (it manages network namespaces)"
cmd=${1:-}
name=${2:-}
[[ -n $cmd ]] || usage
if [[ $cmd != list ]]; then
  [[ $name =~ ^[a-z][a-z0-9]{0,3}$ ]] || die "NAME must be 1-4 lowercase letters or digits, starting with a letter"
fi

dir="$hosts_dir/$name"
netns="wdev-$name"
veth_root="wdh-$name"
veth_host="wdn-$name"
tag="wdev-$name" # iptables comment marking this dev host's rules in the root namespace

# The dev host's number K (1-150), kept in its dir so addresses stay the same across starts.
host_index() {
  if [[ -f $dir/index ]]; then
    cat "$dir/index"
    return
  fi
  local used k
  used=$(cat "$hosts_dir"/*/index 2>/dev/null || true)
  for k in $(seq 1 150); do
    if ! grep -qx "$k" <<<"$used"; then
      mkdir -p "$dir"
      echo "$k" >"$dir/index"
      echo "$k"
      return
    fi
  done
  die "no free dev-host number (150 in use)"
}

agent_pid() {
  local pid
  pid=$(cat "$dir/agent.pid" 2>/dev/null || true)
  # Only a process that is still this dev host's agent (a recycled pid is someone else's).
  if [[ -n $pid ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "wrenn.js agent" &&
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qx "WRENN_INSTANCE=$name"; then
    echo "$pid"
  fi
}

# Root-namespace rules for this dev host, each marked with its comment.
add_rule() {
  local table=$1
  shift
  iptables -w 5 -t "$table" -C "$@" -m comment --comment "$tag" 2>/dev/null ||
    iptables -w 5 -t "$table" -I "$@" -m comment --comment "$tag"
}

remove_rules() {
  local table rule
  for table in filter nat; do
    { iptables -w 5 -t "$table" -S | grep -- "--comment $tag\b" || true; } | sed 's/^-A //' | while read -r rule; do
      eval "iptables -w 5 -t $table -D $rule" || true
    done
  done
}

setup_network() {
  local k=$1
  local root_ip="10.98.$k.1" host_ip="10.98.$k.2"
  if [[ ! -e /var/run/netns/$netns ]]; then
    ip netns add "$netns"
  fi
  if ! ip link show "$veth_root" >/dev/null 2>&1; then
    ip link add "$veth_root" type veth peer name "$veth_host" netns "$netns"
    ip addr add "$root_ip/24" dev "$veth_root"
  fi
  ip link set "$veth_root" up
  ip -n "$netns" link set lo up
  ip -n "$netns" addr replace "$host_ip/24" dev "$veth_host"
  ip -n "$netns" link set "$veth_host" up
  ip -n "$netns" route replace default via "$root_ip"
  sysctl -qw net.ipv4.ip_forward=1
  # A control plane on loopback, reached from the dev host at root_ip.
  sysctl -qw "net.ipv4.conf.$veth_root.route_localnet=1"
  # The dev host's own traffic (its agent, its sandboxes' NATed egress) goes out like the host's.
  add_rule filter FORWARD 1 -i "$veth_root" -j ACCEPT
  add_rule filter FORWARD 1 -o "$veth_root" -j ACCEPT
  add_rule nat POSTROUTING 1 -s "10.98.$k.0/24" ! -o "$veth_root" -j MASQUERADE
}

# WRENN_URL as the dev host reaches it: a loopback host becomes the link's root address, DNATed back.
control_plane_url() {
  local k=$1 url=$2
  local rest=${url#*://} scheme=${url%%://*}
  local hostport=${rest%%/*}
  local host=${hostport%:*} port=${hostport##*:}
  [[ $hostport == *:* ]] || port=$([[ $scheme == https ]] && echo 443 || echo 80)
  case $host in
  127.* | localhost)
    add_rule nat PREROUTING 1 -i "$veth_root" -d "10.98.$k.1" -p tcp --dport "$port" -j DNAT --to-destination "127.0.0.1:$port"
    echo "$scheme://10.98.$k.1:$port"
    ;;
  *) echo "${url%/}" ;;
  esac
}

start() {
  [[ -z $(agent_pid) ]] || die "$name is already running (pid $(agent_pid))"
  local k
  k=$(host_index)
  setup_network "$k"
  local url=${WRENN_URL:-}
  if [[ -z $url && -f $dir/wrenn-url ]]; then url=$(cat "$dir/wrenn-url"); fi
  [[ -n $url ]] || die "set WRENN_URL to the control plane (and WRENN_REGISTRATION_TOKEN on first start)"
  echo "$url" >"$dir/wrenn-url"
  local cp_url
  cp_url=$(control_plane_url "$k" "$url")
  if [[ ! -f $dir/credentials/host.json && -z ${WRENN_REGISTRATION_TOKEN:-} ]]; then
    die "$name is not registered yet: set WRENN_REGISTRATION_TOKEN (POST /v1/hosts on the control plane)"
  fi
  local env=(
    WRENN_DIR="$dir"
    WRENN_IMAGES_DIR="$WRENN_DIR/images"
    WRENN_RUNSC="$WRENN_DIR/bin/runsc"
    WRENN_INSTANCE="$name"
    WRENN_AGENT_LISTEN="10.98.$k.2:$AGENT_PORT"
    WRENN_SLOT_SUBNET="10.$((100 + k)).0.0/16"
    WRENN_CONTROL_PLANE_URL="$cp_url"
  )
  [[ -z ${WRENN_REGISTRATION_TOKEN:-} ]] || env+=(WRENN_REGISTRATION_TOKEN="$WRENN_REGISTRATION_TOKEN")
  [[ -z ${WRENN_HEARTBEAT_SEC:-} ]] || env+=(WRENN_HEARTBEAT_SEC="$WRENN_HEARTBEAT_SEC")
  [[ -z ${WRENN_HEARTBEAT_GRACE:-} ]] || env+=(WRENN_HEARTBEAT_GRACE="$WRENN_HEARTBEAT_GRACE")
  [[ -z ${WRENN_SANDBOX_NAMESERVERS+x} ]] || env+=(WRENN_SANDBOX_NAMESERVERS="$WRENN_SANDBOX_NAMESERVERS")
  [[ -z ${WRENN_EGRESS_DENY+x} ]] || env+=(WRENN_EGRESS_DENY="$WRENN_EGRESS_DENY")
  [[ -z ${LOG_LEVEL:-} ]] || env+=(LOG_LEVEL="$LOG_LEVEL")
  touch "$dir/agent.log"
  # nsenter, not `ip netns exec`: only the network namespace changes. (`ip netns exec` also gives the
  # process a mount namespace with a fresh /sys, hiding the cgroup hierarchy and the agent's mounts.)
  setsid env -i PATH="$PATH" HOME="${HOME:-/root}" "${env[@]}" \
    nsenter --net="/var/run/netns/$netns" "$(command -v node)" "$repo/apps/cli/bin/wrenn.js" agent \
    >>"$dir/agent.log" 2>&1 </dev/null &
  echo $! >"$dir/agent.pid"
  # Ready when it says so in its log; gone when it exits.
  local pid=$! lines
  lines=$(wc -l <"$dir/agent.log")
  for _ in $(seq 1 600); do
    if tail -n +"$((lines + 1))" "$dir/agent.log" | grep -q "listening on"; then
      echo "dev host $name: https://10.98.$k.2:$AGENT_PORT (pid $pid, log $dir/agent.log)"
      return
    fi
    kill -0 "$pid" 2>/dev/null || {
      tail -n 20 "$dir/agent.log" >&2
      die "$name exited before listening (log: $dir/agent.log)"
    }
    sleep 0.1
  done
  die "$name did not start in 60 s (log: $dir/agent.log)"
}

stop_with() {
  local signal=$1 pid
  pid=$(agent_pid)
  [[ -n $pid ]] || {
    echo "dev host $name is not running"
    return
  }
  kill "-$signal" "$pid"
  for _ in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || {
      rm -f "$dir/agent.pid"
      echo "dev host $name: stopped ($signal)"
      return
    }
    sleep 0.1
  done
  die "$name did not exit in 60 s after $signal"
}

remove() {
  [[ -d $dir || -e /var/run/netns/$netns ]] || die "no dev host $name"
  stop_with KILL
  # What its agent left: with the agent gone, a fresh agent of the same instance would clean up, but
  # nothing will start again, so the leftovers go here: runsc processes, mounts, slot namespaces,
  # cgroups, firewall chains (inside the netns, they go with it).
  local pid
  for pid in $({ grep -lz -- "--root=$dir/run/runsc" /proc/[0-9]*/cmdline 2>/dev/null || true; } | cut -d/ -f3); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  sleep 0.2
  { grep -o " $dir/[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  local ns
  for ns in /var/run/netns/wrenn-"$name"-*; do
    [[ -e $ns ]] && ip netns del "$(basename "$ns")" 2>/dev/null || true
  done
  local cg
  for cg in /sys/fs/cgroup/*/wrenn-"$name"; do
    [[ -d $cg ]] || continue
    find "$cg" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
    rmdir "$cg" 2>/dev/null || true
  done
  remove_rules
  ip link del "$veth_root" 2>/dev/null || true
  ip netns del "$netns" 2>/dev/null || true
  rm -rf "$dir"
  echo "dev host $name: removed"
}

# A network partition between the dev host and everything else, made inside its namespace (the
# agent and its sandboxes keep running; only its link is cut).
partition() {
  [[ -e /var/run/netns/$netns ]] || die "no dev host $name"
  local rule
  for rule in "INPUT -i" "OUTPUT -o" "FORWARD -i" "FORWARD -o"; do
    # shellcheck disable=SC2086 # "CHAIN -flag" splits on purpose
    ip netns exec "$netns" iptables -w 5 -C $rule "$veth_host" -j DROP 2>/dev/null ||
      ip netns exec "$netns" iptables -w 5 -I ${rule%% *} 1 ${rule#* } "$veth_host" -j DROP
  done
  echo "dev host $name: partitioned"
}

heal() {
  [[ -e /var/run/netns/$netns ]] || die "no dev host $name"
  local rule
  for rule in "INPUT -i" "OUTPUT -o" "FORWARD -i" "FORWARD -o"; do
    # shellcheck disable=SC2086
    while ip netns exec "$netns" iptables -w 5 -D $rule "$veth_host" -j DROP 2>/dev/null; do :; done
  done
  echo "dev host $name: healed"
}

status() {
  [[ -f $dir/index ]] || die "no dev host $name"
  local k pid
  k=$(cat "$dir/index")
  pid=$(agent_pid)
  echo "dev host $name: address 10.98.$k.2:$AGENT_PORT, netns $netns, data $dir, log $dir/agent.log, ${pid:+pid $pid}${pid:-not running}"
}

case $cmd in
start) start ;;
stop) stop_with TERM ;;
kill) stop_with KILL ;;
rm) remove ;;
partition) partition ;;
heal) heal ;;
status) status ;;
list)
  for d in "$hosts_dir"/*/; do
    [[ -f $d/index ]] || continue
    name=$(basename "$d") dir="$hosts_dir/$name" netns="wdev-$name" status
  done
  ;;
*) usage ;;
esac
