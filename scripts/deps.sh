#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian machine, when it is missing:
# mosquitto (the MQTT broker), mbpoll and socat (independent Modbus client, pty pairs),
# libdbus-1-dev (Bluetooth LE via BlueZ's D-Bus API), and a pinned pymodbus in a venv
# under target/ (an independent Modbus server for interoperability tests).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(mosquitto mosquitto-clients mbpoll socat libdbus-1-dev pkg-config dbus-daemon)
if ! python3 -m venv --help >/dev/null 2>&1; then pkgs+=(python3-venv); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "deps: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=target/pytools
want="3.16.1"
if ! "$venv/bin/python" -c "import pymodbus, serial, sys; sys.exit(pymodbus.__version__ != '$want')" 2>/dev/null; then
  echo "deps: installing pymodbus==$want into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "pymodbus==$want" "pyserial==3.5"
fi
