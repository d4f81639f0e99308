#!/bin/sh
# Install the ATM agent on a kiosk (docs/kiosk.md, "Installing"), as root:
#
#     make install [DESTDIR=/staging] [PREFIX=/opt/atm]       or  deploy/install.sh
#     make uninstall                                          removes the program, keeps the data
#
# - the agent, from a wheel built from this tree, into a venv under $PREFIX (default /opt/atm);
# - the system user and group atm (dialout, audio, video, input, gpio where they exist);
# - /etc/atm/atm.toml from docs/atm.example.toml, never overwritten (an upgrade keeps yours);
# - /var/lib/atm (journal, outbox, speech cache, evidence), owned by atm, mode 0750;
# - the systemd unit and the udev rules.
#
# With DESTDIR the tree is staged there (for a package): no user is made, nothing is
# started, and the venv's paths are those of the final place. INSTALL_DEPS=no installs the
# wheel without its dependencies (a staging check that needs no package index).
set -eu

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/opt/atm}
PYTHON=${PYTHON:-python3}              # the kiosk's Python, for the agent's venv
BUILD_PYTHON=${BUILD_PYTHON:-$PYTHON}  # one with pip and setuptools, to build the wheel (make: the .venv's)
INSTALL_DEPS=${INSTALL_DEPS:-yes}
SRC=$(cd "$(dirname "$0")/.." && pwd)
ACTION=${1:-install}

say() { printf 'install: %s\n' "$*"; }
fail() { printf 'install: error: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || [ -n "$DESTDIR" ] || fail "run it as root (sudo make install), or stage it with DESTDIR=..."
case "$PREFIX" in /*) ;; *) fail "PREFIX must be an absolute path, got '$PREFIX'" ;; esac

ROOT="$DESTDIR"
UNIT_DIR="$ROOT/etc/systemd/system"
RULES_DIR="$ROOT/etc/udev/rules.d"

uninstall() {
    rm -rf "$ROOT$PREFIX" "$UNIT_DIR/atm-agent.service" "$RULES_DIR/99-atm.rules"
    say "removed $PREFIX, the unit and the udev rules; kept /etc/atm and /var/lib/atm"
    if [ -z "$DESTDIR" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
}

if [ "$ACTION" = uninstall ]; then
    uninstall
    exit 0
fi
[ "$ACTION" = install ] || fail "unknown action '$ACTION' (install or uninstall)"

# the user and group, on the real system only
if [ -z "$DESTDIR" ]; then
    getent group atm >/dev/null || groupadd --system atm
    if ! getent passwd atm >/dev/null; then
        useradd --system --gid atm --home-dir /var/lib/atm --no-create-home --shell /usr/sbin/nologin atm
    fi
    for group in dialout audio video input gpio; do
        if getent group "$group" >/dev/null; then usermod -a -G "$group" atm; fi
    done
    OWNER=atm
else
    OWNER=$(id -un)
fi

# the agent: a wheel from this tree, into a fresh venv at its final path
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
"$BUILD_PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$BUILD" "$SRC" >/dev/null
WHEEL=$(ls "$BUILD"/*.whl)
rm -rf "$ROOT$PREFIX.new"
"$PYTHON" -m venv "$ROOT$PREFIX.new/venv"
if [ "$INSTALL_DEPS" = no ]; then
    "$ROOT$PREFIX.new/venv/bin/python" -m pip install --quiet --no-deps "$WHEEL"
else
    "$ROOT$PREFIX.new/venv/bin/python" -m pip install --quiet "$WHEEL"
fi
if [ -n "$DESTDIR" ]; then  # the venv names its staging path: name the final one
    grep -rlF "$ROOT$PREFIX.new" "$ROOT$PREFIX.new/venv/bin" "$ROOT$PREFIX.new/venv/pyvenv.cfg" 2>/dev/null |
        while read -r file; do sed -i "s|$ROOT$PREFIX.new|$PREFIX|g" "$file"; done
else
    grep -rlF "$PREFIX.new" "$PREFIX.new/venv/bin" "$PREFIX.new/venv/pyvenv.cfg" 2>/dev/null |
        while read -r file; do sed -i "s|$PREFIX.new|$PREFIX|g" "$file"; done
fi
rm -rf "$ROOT$PREFIX.old"
[ -d "$ROOT$PREFIX" ] && mv "$ROOT$PREFIX" "$ROOT$PREFIX.old"
mv "$ROOT$PREFIX.new" "$ROOT$PREFIX"  # the switch: the old program stays whole until here
rm -rf "$ROOT$PREFIX.old"
install -d -m 0755 "$ROOT$PREFIX/share/doc/atm"
install -m 0644 "$SRC/docs/kiosk.md" "$SRC/docs/service.md" "$SRC/docs/configuration.md" "$ROOT$PREFIX/share/doc/atm/"
say "the agent in $PREFIX/venv (from $(basename "$WHEEL"))"

# the config: made once, never overwritten
install -d -m 0755 "$ROOT/etc/atm"
if [ -e "$ROOT/etc/atm/atm.toml" ]; then
    say "kept /etc/atm/atm.toml (yours); the example of this version: $PREFIX/share/doc/atm/atm.example.toml"
else
    install -m 0640 "$SRC/docs/atm.example.toml" "$ROOT/etc/atm/atm.toml"
    [ -z "$DESTDIR" ] && chgrp atm "$ROOT/etc/atm/atm.toml"
    say "made /etc/atm/atm.toml from the example: set [security] card_key and the rig"
fi
install -m 0644 "$SRC/docs/atm.example.toml" "$ROOT$PREFIX/share/doc/atm/"

# the data, the unit, the rules
install -d -m 0750 "$ROOT/var/lib/atm"
[ -z "$DESTDIR" ] && chown "$OWNER:$OWNER" "$ROOT/var/lib/atm"
install -d -m 0755 "$UNIT_DIR" "$RULES_DIR"
sed "s|/opt/atm|$PREFIX|g" "$SRC/deploy/atm-agent.service" >"$UNIT_DIR/atm-agent.service"
chmod 0644 "$UNIT_DIR/atm-agent.service"
install -m 0644 "$SRC/deploy/99-atm.rules" "$RULES_DIR/99-atm.rules"
say "the unit atm-agent.service and the udev rules 99-atm.rules"

if [ -z "$DESTDIR" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    udevadm control --reload 2>/dev/null || true
    say "next: edit /etc/atm/atm.toml, then systemctl enable --now atm-agent"
fi
