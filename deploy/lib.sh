# Shared by install.sh and uninstall.sh: where things go, and how each change is made or shown.
# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this

# The paths the units and the default config name; PREFIX (--prefix or $DESTDIR) is put in front
# of each when files are laid out under another root.
APP_DIR=/opt/edge-vision            # code and its virtualenv (.venv)
CONF_DIR=/etc/edge-vision           # edge.toml (yours), edge.toml.dist (the shipped default)
STATE_DIR=/var/lib/edge-vision      # the service's working and state directory: all it writes
MODELS_DIR=$STATE_DIR/artifacts/models
OUTPUTS_DIR=$STATE_DIR/artifacts/outputs
CACHE_DIR=/var/cache/edge-vision    # made by systemd (CacheDirectory=)
UNIT_DIR=/etc/systemd/system
SERVICE=edge-vision.service
POWER_SERVICE=edge-vision-power.service
SERVICE_USER=edge-vision

PREFIX=${DESTDIR:-}
DRY_RUN=0
CHANGES=0

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 2
}

# The path of $1 under the prefix.
at() { printf '%s%s' "$PREFIX" "$1"; }

# Make one change: `act DESCRIPTION COMMAND...` runs COMMAND (or only shows it with --dry-run).
act() {
	local what=$1
	shift
	CHANGES=$((CHANGES + 1))
	if ((DRY_RUN)); then
		say "would $what: $*"
	else
		say "$what"
		"$@"
	fi
}

# True when the layout is for another root (tests, packaging): files only, no system changes.
prefixed() { [[ -n $PREFIX ]]; }

# Remove a file or folder under the prefix if it is there.
remove() {
	local path
	path=$(at "$1")
	if [[ -e $path || -L $path ]]; then
		act "remove $path" rm -rf -- "$path"
	fi
}

# True when systemd runs this machine (not in a chroot, a container or an image build).
systemd_running() { [[ -d /run/systemd/system ]]; }

# Stop and disable installed units (not under --prefix); disabling works without a running systemd.
disable_units() {
	local unit
	prefixed && return 0
	for unit in "$@"; do
		[[ -f $UNIT_DIR/$unit ]] || continue
		if systemd_running; then
			act "stop and disable $unit" systemctl disable --now "$unit"
		else
			act "disable $unit" systemctl disable "$unit"
		fi
	done
}
