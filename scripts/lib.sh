# shellcheck shell=bash
# Helpers for scripts/test and .ci/run. Source this file; every function is
# idempotent and prints what it does. Works with `set -euo pipefail`.
#
# Exports (after the ensure_* calls):
#   AMQP_URL                 amqp://guest:guest@127.0.0.1:5672/%2f by default
# Knobs: RABBITMQ_WAIT_SECS (default 90), RABBITMQ_MANAGEMENT_WAIT_SECS (default 60).
#   RABBITMQ_MANAGEMENT_URL  http://127.0.0.1:15672 by default (guest/guest)
#   SMTP_SERVER_PYTHON       a python3 interpreter that can `import aiosmtpd`
#   SMTP_SINK_SCRIPT         absolute path of scripts/smtp-sink.py

_LIB_SH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$_LIB_SH_DIR/.." && pwd)"
export REPO_ROOT

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; return 1; }

# tcp_open HOST PORT: true if something accepts a TCP connection there.
tcp_open() {
  local host="$1" port="$2"
  # shellcheck disable=SC2016 # $0/$1 expand in the child bash, on purpose
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# wait_tcp HOST PORT SECONDS
wait_tcp() {
  local host="$1" port="$2" secs="$3" i
  for ((i = 0; i < secs; i++)); do
    tcp_open "$host" "$port" && return 0
    sleep 1
  done
  return 1
}

# Parse host and port out of an amqp:// URL (sets _AMQP_HOST, _AMQP_PORT).
_amqp_host_port() {
  local url="$1" rest hostport
  rest="${url#*://}"      # strip scheme
  rest="${rest%%/*}"      # strip vhost path
  rest="${rest%%\?*}"     # strip query
  hostport="${rest##*@}"  # strip credentials
  if [[ "$hostport" == \[*\]* ]]; then # [ipv6]:port
    _AMQP_HOST="${hostport%%]*}"; _AMQP_HOST="${_AMQP_HOST#[}"
    _AMQP_PORT="${hostport##*]:}"; [[ "$_AMQP_PORT" == "$hostport" ]] && _AMQP_PORT=""
  elif [[ "$hostport" == *:* ]]; then
    _AMQP_HOST="${hostport%%:*}"; _AMQP_PORT="${hostport##*:}"
  else
    _AMQP_HOST="$hostport"; _AMQP_PORT=""
  fi
  [[ -n "$_AMQP_HOST" ]] || _AMQP_HOST=127.0.0.1
  if [[ -z "$_AMQP_PORT" ]]; then
    if [[ "$url" == amqps://* ]]; then _AMQP_PORT=5671; else _AMQP_PORT=5672; fi
  fi
}

_apt_updated=""
_apt_install() {
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  if [[ -z "$_apt_updated" ]]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    _apt_updated=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || return 1
}

_docker_compose_works() {
  command -v docker >/dev/null 2>&1 \
    && timeout 10 docker compose version >/dev/null 2>&1 \
    && timeout 10 docker info >/dev/null 2>&1
}

ensure_rabbitmq() {
  export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
  _amqp_host_port "$AMQP_URL"
  local host="$_AMQP_HOST" port="$_AMQP_PORT" wait_secs="${RABBITMQ_WAIT_SECS:-90}"
  log "ensure_rabbitmq: checking AMQP on $host:$port"
  if tcp_open "$host" "$port"; then
    log "ensure_rabbitmq: RabbitMQ already answers on $host:$port, using it"
    return 0
  fi

  local started_local=""
  if command -v rabbitmq-server >/dev/null 2>&1 || [[ -x /usr/sbin/rabbitmq-server ]]; then
    log "ensure_rabbitmq: starting installed RabbitMQ (rabbitmq-server -detached)"
    PATH="$PATH:/usr/sbin" rabbitmq-server -detached || log "ensure_rabbitmq: rabbitmq-server -detached returned $? (may already be starting)"
    started_local=1
  elif _apt_install rabbitmq-server; then
    # Debian's postinst may have started it through systemd/init; start
    # it ourselves if nothing listens yet (no systemd in containers).
    if ! wait_tcp "$host" "$port" 5; then
      log "ensure_rabbitmq: starting freshly installed RabbitMQ (rabbitmq-server -detached)"
      PATH="$PATH:/usr/sbin" rabbitmq-server -detached || true
    fi
    started_local=1
  elif _docker_compose_works; then
    log "ensure_rabbitmq: docker compose up -d rabbitmq"
    (cd "$REPO_ROOT" && docker compose up -d rabbitmq) || die "docker compose up -d rabbitmq failed" || return 1
  else
    die "ensure_rabbitmq: nothing answers on $host:$port and RabbitMQ could not be started (not installed, apt-get unavailable or not root, no docker compose). Install rabbitmq-server or set AMQP_URL to a running broker." || return 1
  fi

  # `rabbitmq-server -detached` returns at once, before the Erlang node is
  # reachable (await_startup would fail right away), so poll the AMQP port
  # (opened near the end of boot), then confirm with await_startup.
  log "ensure_rabbitmq: waiting for $host:$port (up to $wait_secs s)"
  if ! wait_tcp "$host" "$port" "$wait_secs"; then
    die "ensure_rabbitmq: RabbitMQ did not answer on $host:$port within $wait_secs s (see /var/log/rabbitmq/)" || return 1
  fi
  if [[ -n "$started_local" ]] && command -v rabbitmqctl >/dev/null 2>&1; then
    log "ensure_rabbitmq: rabbitmqctl await_startup (timeout 30 s)"
    timeout 40 rabbitmqctl -q await_startup --timeout 30 >/dev/null 2>&1 \
      || log "ensure_rabbitmq: await_startup did not confirm, but the AMQP port answers; going on"
  fi
  log "ensure_rabbitmq: RabbitMQ is up on $host:$port"
}

_mgmt_answers() {
  local url="$1/api/overview"
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -m 5 -u guest:guest -o /dev/null "$url" 2>/dev/null
  else
    _any_python -c '
import base64, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
urllib.request.urlopen(req, timeout=5).read()
' "$url" 2>/dev/null
  fi
}

_any_python() {
  local py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1; then "$py" "$@"; return; fi
  done
  return 127
}

ensure_rabbitmq_management() {
  export RABBITMQ_MANAGEMENT_URL="${RABBITMQ_MANAGEMENT_URL:-http://127.0.0.1:15672}"
  local url="${RABBITMQ_MANAGEMENT_URL%/}" i wait_secs="${RABBITMQ_MANAGEMENT_WAIT_SECS:-60}"
  log "ensure_rabbitmq_management: checking $url/api/overview"
  if _mgmt_answers "$url"; then
    log "ensure_rabbitmq_management: management API answers at $url"
    return 0
  fi
  if command -v rabbitmq-plugins >/dev/null 2>&1 || [[ -x /usr/sbin/rabbitmq-plugins ]]; then
    log "ensure_rabbitmq_management: rabbitmq-plugins enable rabbitmq_management"
    PATH="$PATH:/usr/sbin" rabbitmq-plugins enable rabbitmq_management >/dev/null \
      || die "ensure_rabbitmq_management: rabbitmq-plugins enable rabbitmq_management failed" || return 1
  else
    log "ensure_rabbitmq_management: rabbitmq-plugins not found, waiting for the API anyway (docker image ships it)"
  fi
  log "ensure_rabbitmq_management: waiting for $url/api/overview (up to $wait_secs s)"
  for ((i = 0; i < wait_secs; i++)); do
    if _mgmt_answers "$url"; then
      log "ensure_rabbitmq_management: management API answers at $url"
      return 0
    fi
    sleep 1
  done
  die "ensure_rabbitmq_management: $url/api/overview did not answer within $wait_secs s (guest/guest)" || return 1
}

# Print the first interpreter that can import aiosmtpd.
_find_aiosmtpd_python() {
  local py
  for py in ${SMTP_SERVER_PYTHON:-} /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import aiosmtpd' >/dev/null 2>&1; then
      command -v "$py"
      return 0
    fi
  done
  return 1
}

ensure_smtp_server() {
  local py
  export SMTP_SINK_SCRIPT="$_LIB_SH_DIR/smtp-sink.py"
  [[ -f "$SMTP_SINK_SCRIPT" ]] || die "ensure_smtp_server: $SMTP_SINK_SCRIPT is missing" || return 1
  log "ensure_smtp_server: looking for a python3 that can import aiosmtpd"
  if ! py="$(_find_aiosmtpd_python)"; then
    if _apt_install python3-aiosmtpd; then
      :
    else
      log "ensure_smtp_server: apt unavailable, trying pip install aiosmtpd"
      local pip_py
      for pip_py in python3 /usr/bin/python3; do
        command -v "$pip_py" >/dev/null 2>&1 || continue
        "$pip_py" -m pip install --quiet aiosmtpd 2>/dev/null \
          || "$pip_py" -m pip install --quiet --break-system-packages aiosmtpd 2>/dev/null \
          || "$pip_py" -m pip install --quiet --user aiosmtpd 2>/dev/null \
          || continue
        break
      done
    fi
    py="$(_find_aiosmtpd_python)" \
      || die "ensure_smtp_server: no python3 can import aiosmtpd (tried apt python3-aiosmtpd and pip install aiosmtpd)" || return 1
  fi
  export SMTP_SERVER_PYTHON="$py"
  log "ensure_smtp_server: SMTP_SERVER_PYTHON=$SMTP_SERVER_PYTHON SMTP_SINK_SCRIPT=$SMTP_SINK_SCRIPT"
  log "ensure_smtp_server: tests start their own sink: \$SMTP_SERVER_PYTHON \$SMTP_SINK_SCRIPT --host 127.0.0.1 --port 0 --maildir DIR [--reject]"
}
