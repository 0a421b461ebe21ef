#!/usr/bin/env bash
# Remove what deploy/install.sh installed. See usage().
set -euo pipefail

PROG=uninstall.sh
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/lib.sh
source "$SRC/deploy/lib.sh"

usage() {
	cat <<EOF2
Usage: deploy/uninstall.sh [--dry-run] [--prefix DIR] [--purge]

Stops and disables $SERVICE and $POWER_SERVICE, removes the units, the code and virtualenv
($APP_DIR), the models and engines ($MODELS_DIR) and the cache ($CACHE_DIR).
Kept unless --purge: what the service wrote in $STATE_DIR (the recorded outputs, the MQTT
spool, footage), the config ($CONF_DIR) and the user $SERVICE_USER (who owns them). The apt
packages stay: other programs may use them.

Options:
  --dry-run     print what would be removed, remove nothing
  --prefix DIR  remove the files laid out under DIR only (also: DESTDIR=DIR); no systemctl, no userdel
  --purge       also remove what the service wrote, the config and the user
EOF2
}

PURGE=0
while (($#)); do
	case $1 in
	--dry-run) DRY_RUN=1 ;;
	--prefix)
		[[ $# -ge 2 && -n $2 ]] || die "--prefix needs a folder"
		PREFIX=$(realpath -m -- "$2")
		shift
		;;
	--purge) PURGE=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
	shift
done

if ! prefixed && ((!DRY_RUN)) && ((EUID != 0)); then
	die "run as root (sudo $0), or use --dry-run / --prefix"
fi
disable_units "$SERVICE" "$POWER_SERVICE"
remove "$UNIT_DIR/$SERVICE"
remove "$UNIT_DIR/$SERVICE.d"
remove "$UNIT_DIR/$POWER_SERVICE"
if ! prefixed && systemd_running && ((CHANGES)); then
	act "reload systemd" systemctl daemon-reload
fi
remove "$APP_DIR"
remove "$MODELS_DIR"
remove "$STATE_DIR/artifacts/cache"
remove "$CACHE_DIR"
if ((PURGE)); then
	remove "$STATE_DIR"
	remove "$CONF_DIR"
	if ! prefixed && getent passwd "$SERVICE_USER" >/dev/null; then
		act "remove the user $SERVICE_USER" userdel "$SERVICE_USER"
	fi
else
	[[ -d $(at "$STATE_DIR") ]] && say "kept what the service wrote (recorded outputs, MQTT spool) in $STATE_DIR (--purge removes it)"
	[[ -d $(at "$CONF_DIR") ]] && say "kept the config in $CONF_DIR (--purge removes it)"
fi
if ((DRY_RUN)); then
	say "dry run: $CHANGES removals to make, none made"
else
	say "done: $CHANGES removals"
fi
