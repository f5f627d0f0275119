#!/usr/bin/env bash
# Make sure the services the integration tests and the distributed mode talk to are
# running on this machine: PostgreSQL (127.0.0.1:5432, trust auth) and RabbitMQ
# (127.0.0.1:5672, guest/guest). Installs them from Debian's packages when missing,
# starts them when stopped, and does nothing when they already answer. Idempotent.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  for _ in $(seq 1 "$3"); do port_open "$2" && return 0; sleep 1; done
  echo "$1 did not come up on port $2" >&2; return 1
}

apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install $*" >&2; return 1; fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if port_open 5432; then
  echo "postgres: already running"
else
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  ver="$(ls /etc/postgresql | sort -V | tail -n 1)"
  # trust auth on loopback, as the tests expect (a fresh Debian install uses peer/md5)
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  wait_port postgres 5432 60
  echo "postgres: started"
fi

if port_open 5672; then
  echo "rabbitmq: already running"
else
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  rabbitmq-server -detached
  wait_port rabbitmq 5672 120
  # the AMQP port opens slightly before the node accepts logins
  for _ in $(seq 1 30); do rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
  echo "rabbitmq: started"
fi

# Headless Chromium for the status-page test (Debian's package; no browser download).
if command -v chromium >/dev/null || [ -n "${MONO2MESH_CHROMIUM:-}" ]; then
  echo "chromium: present"
else
  apt_install chromium
  echo "chromium: installed"
fi
