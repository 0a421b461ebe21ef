#!/usr/bin/env bash
# Install the edge vision runtime as a systemd service on a Jetson (JetPack 6). See usage().
set -euo pipefail

PROG=install.sh
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/lib.sh
source "$SRC/deploy/lib.sh"

APT_PACKAGES=(
	python3-venv python3-dev build-essential
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp
	gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 python3-gi
)
MODELS=(yolov8_detector.onnx reid_mobilenetv2.onnx colorizer.onnx)
CODE_FILES=(Makefile pyproject.toml LICENSE README.md requirements.txt requirements-jetson.txt)
CODE_PACKAGES=(edge export)

usage() {
	cat <<EOF
Usage: deploy/install.sh [--dry-run] [--prefix DIR] [--models DIR] [--power-mode N] [--no-start]

Installs the runtime as the systemd service $SERVICE, and can be run again to update
(it changes only what differs):
  - checks for JetPack (/etc/nv_tegra_release or the nvidia-jetpack package); on another
    Debian/Ubuntu it warns and installs for ONNX Runtime on the CPU
  - apt packages: GStreamer and its plugins, PyGObject, gst-rtsp-server, Python venv support
  - code in $APP_DIR, with a virtualenv (--system-site-packages, so JetPack's TensorRT and
    PyGObject are seen) holding requirements-jetson.txt (Jetson) or requirements.txt
  - the system user $SERVICE_USER, in the groups video (and render where it exists)
  - $CONF_DIR/edge.toml: the default config, never overwriting one you edited (the new default
    then goes beside it as edge.toml.dist)
  - the ONNX models (${MODELS[*]}) from --models into $MODELS_DIR,
    and on a Jetson their TensorRT engines (TensorRT 10 or newer: JetPack 6.1+)
  - the units $SERVICE and $POWER_SERVICE in $UNIT_DIR; enables and (re)starts the service

Options:
  --dry-run       print what would change, change nothing
  --prefix DIR    lay out the files under DIR only (also: DESTDIR=DIR): no apt, no virtualenv,
                  no user, no engines, no systemctl; for tests and packaging
  --models DIR    where the ONNX models are (default: $SRC/artifacts/models)
  --power-mode N  also enable $POWER_SERVICE: nvpmodel -m N and jetson_clocks at boot
  --no-start      enable the service but do not (re)start it
EOF
}

MODELS_SRC=$SRC/artifacts/models
POWER_MODE=""
START=1
while (($#)); do
	case $1 in
	--dry-run) DRY_RUN=1 ;;
	--prefix)
		[[ $# -ge 2 && -n $2 ]] || die "--prefix needs a folder"
		PREFIX=$(realpath -m -- "$2")
		shift
		;;
	--models)
		[[ $# -ge 2 && -d $2 ]] || die "--models needs an existing folder"
		MODELS_SRC=$2
		shift
		;;
	--power-mode)
		[[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || die "--power-mode needs a number (see nvpmodel -q --verbose)"
		POWER_MODE=$2
		shift
		;;
	--no-start) START=0 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) die "unknown option '$1' (see --help)" ;;
	esac
	shift
done

is_jetson() { [[ -f /etc/nv_tegra_release ]] || dpkg -s nvidia-jetpack >/dev/null 2>&1; }

check_platform() {
	if is_jetson; then
		say "JetPack: $(head -n1 /etc/nv_tegra_release 2>/dev/null || echo "nvidia-jetpack installed")"
	elif [[ -f /etc/debian_version ]]; then
		warn "not a Jetson (no /etc/nv_tegra_release, no nvidia-jetpack): installing for" \
			"$(. /etc/os-release && echo "$PRETTY_NAME") with ONNX Runtime on the CPU"
	elif ! prefixed; then
		die "needs Debian, Ubuntu or JetPack (apt); use --prefix to lay out the files only"
	fi
	if ! prefixed && ((!DRY_RUN)) && ((EUID != 0)); then
		die "run as root (sudo $0), or use --dry-run / --prefix"
	fi
}

# Copy a file if the target differs: `put SOURCE TARGET MODE`.
put() {
	local target
	target=$(at "$2")
	cmp -s -- "$1" "$target" 2>/dev/null && return 0
	act "install $2" install -D -m "$3" -- "$1" "$target"
}

# Write text to a file if it differs: `put_text TEXT TARGET MODE`.
put_text() {
	local target
	target=$(at "$2")
	[[ -f $target && $(<"$target") == "$1" ]] && return 0
	act "write $2" install -D -m "$3" /dev/stdin "$target" <<<"$1"
}

# Create a folder if missing: `folder PATH MODE [OWNER]` (OWNER only outside --prefix).
folder() {
	local path owner
	path=$(at "$1")
	[[ -d $path ]] || act "create $1" install -d -m "$2" -- "$path"
	[[ -n ${3:-} ]] && ! prefixed || return 0
	owner=$(stat -c %U "$path" 2>/dev/null || echo none)
	[[ $owner == "$3" ]] || act "give $1 to $3" chown "$3:$3" -- "$path"
}

install_apt_packages() {
	local missing=() package
	for package in "${APT_PACKAGES[@]}"; do
		dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
	done
	((${#missing[@]})) || return 0
	act "update apt lists" apt-get update -qq
	act "install ${missing[*]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# A package's code files under folder $1, relative to it: modules and the web page's files.
code_files() {
	(cd "$1" && find . -not -path '*/__pycache__/*' \( -name '*.py' -o -path './web/static/*' \) \
		-type f -printf '%P\n' | sort)
}

install_code() {
	local package file
	for file in "${CODE_FILES[@]}"; do
		[[ -f $SRC/$file ]] && put "$SRC/$file" "$APP_DIR/$file" 0644
	done
	for package in "${CODE_PACKAGES[@]}"; do
		while IFS= read -r file; do
			put "$SRC/$package/$file" "$APP_DIR/$package/$file" 0644
		done < <(code_files "$SRC/$package")
		# Files gone from the source must not linger in the install.
		[[ -d $(at "$APP_DIR/$package") ]] || continue
		while IFS= read -r file; do
			[[ -f $SRC/$package/$file ]] || remove "$APP_DIR/$package/$file"
		done < <(code_files "$(at "$APP_DIR/$package")")
	done
}

install_venv() {
	local venv=$APP_DIR/.venv requirements stamp
	requirements=requirements.txt
	is_jetson && requirements="requirements-jetson.txt"
	/usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
		die "the runtime needs Python >= 3.10 (JetPack 6 has 3.10)"
	[[ -x $venv/bin/python ]] ||
		act "create the virtualenv $venv" /usr/bin/python3 -m venv --system-site-packages "$venv"
	# Reinstall only when the requirement files changed (pip's own check is slow on a Jetson).
	stamp=$(cat "$SRC/requirements.txt" "$SRC/requirements-jetson.txt" | sha256sum | cut -d' ' -f1)
	if [[ $(cat "$venv/.requirements" 2>/dev/null) != "$stamp" ]]; then
		# pycuda (Jetson) compiles against JetPack's CUDA and looks for nvcc on the PATH.
		act "install $requirements into $venv" env PATH="/usr/local/cuda/bin:$PATH" \
			"$venv/bin/pip" install -q --disable-pip-version-check -r "$APP_DIR/$requirements"
		((DRY_RUN)) || printf '%s\n' "$stamp" >"$venv/.requirements"
	fi
	if ((!DRY_RUN)) && ! "$venv/bin/python" -c \
		"import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')"; then
		warn "the virtualenv does not see PyGObject/GStreamer: is python3-gi installed for $(/usr/bin/python3 --version)?"
	fi
}

install_user() {
	local group
	if ! getent passwd "$SERVICE_USER" >/dev/null; then
		act "create the system user $SERVICE_USER" useradd --system --user-group \
			--home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
	fi
	for group in video render; do
		getent group "$group" >/dev/null || continue
		id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$group" ||
			act "add $SERVICE_USER to the group $group" usermod -aG "$group" "$SERVICE_USER"
	done
}

# The config is yours once edited: it is replaced only while it is still an unedited default.
install_config() {
	local config=$CONF_DIR/edge.toml dist=$CONF_DIR/edge.toml.dist new=$SRC/deploy/edge.toml
	folder "$CONF_DIR" 0755
	if [[ ! -f $(at "$config") ]]; then
		put "$new" "$config" 0640
	elif ! cmp -s "$new" "$(at "$config")"; then
		if [[ -f $(at "$dist") ]] && cmp -s "$(at "$dist")" "$(at "$config")"; then
			put "$new" "$config" 0640 # the previous default, never edited: update it
		else
			say "kept your edited $config; the new default is $dist (diff them)"
		fi
	fi
	put "$new" "$dist" 0644
	if ! prefixed && ((!DRY_RUN)) && [[ $(stat -c %G "$config") != "$SERVICE_USER" ]]; then
		# Readable by the service, not by everyone: source URIs may hold camera passwords.
		act "let $SERVICE_USER read $config" chgrp "$SERVICE_USER" "$config"
	fi
	if [[ -n $POWER_MODE ]]; then
		put_text "EDGE_NVPMODEL=$POWER_MODE" "$CONF_DIR/power.env" 0644
	fi
}

install_models() {
	local model found=0
	# The unit's StateDirectory=, owned by the service as systemd would make it: the relative
	# paths of edge.toml (outputs, MQTT spool) are created there. The models stay root's: the
	# service only reads them.
	folder "$STATE_DIR" 0755 "$SERVICE_USER"
	folder "$STATE_DIR/artifacts" 0755 "$SERVICE_USER"
	folder "$MODELS_DIR" 0755
	folder "$OUTPUTS_DIR" 0750 "$SERVICE_USER"
	for model in "${MODELS[@]}"; do
		if [[ -f $MODELS_SRC/$model ]]; then
			put "$MODELS_SRC/$model" "$MODELS_DIR/$model" 0644
		fi
		[[ -f $(at "$MODELS_DIR/$model") || -f $MODELS_SRC/$model ]] && found=$((found + 1))
	done
	if ((found < ${#MODELS[@]})); then
		warn "models missing in $MODELS_DIR: make them on a development machine (make models)," \
			"then rerun with --models DIR, or copy ${MODELS[*]} there"
		return 1
	fi
}

# The web page's password: asked for when none is set and a terminal is there. The service user
# writes its scrypt hash (mode 0600, in web.password_file of the installed config).
install_web_password() {
	local command=(runuser -u "$SERVICE_USER" -- env -C "$STATE_DIR" PYTHONPATH="$APP_DIR"
		"$APP_DIR/.venv/bin/python" -m edge web passwd --if-missing --config "$CONF_DIR/edge.toml")
	if ((DRY_RUN)) || [[ ! -t 0 ]]; then
		say "the web page ([web] in $CONF_DIR/edge.toml) needs a password: sudo ${command[*]}"
	elif ! "${command[@]}"; then
		warn "no web password set: the page stays off until you run: sudo ${command[*]}"
	fi
}

systemd_version() { systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 + 0 }'; }

install_units() {
	local before=$CHANGES
	put "$SRC/deploy/$SERVICE" "$UNIT_DIR/$SERVICE" 0644
	put "$SRC/deploy/$POWER_SERVICE" "$UNIT_DIR/$POWER_SERVICE" 0644
	if (($(systemd_version || echo 0) >= 254)); then
		put "$SRC/deploy/restart-backoff.conf" "$UNIT_DIR/$SERVICE.d/restart-backoff.conf" 0644
	fi
	UNITS_CHANGED=$((CHANGES - before))
}

build_engines() {
	is_jetson || return 0
	local python=$APP_DIR/.venv/bin/python version major
	# TensorRT 10 or newer (JetPack 6.1+): JetPack 6.0's TensorRT 8.6 lacks APIs the builder and
	# the runtime use; the runtime then runs the ONNX models with ONNX Runtime on the CPU.
	if ((!DRY_RUN)); then
		version=$("$python" -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || echo none)
		major=${version%%.*}
		if [[ ! $major =~ ^[0-9]+$ ]] || ((major < 10)); then
			warn "TensorRT $version: engines need TensorRT 10 or newer: JetPack 6.1+;" \
				"until then $SERVICE runs the ONNX models with ONNX Runtime on the CPU"
			return 0
		fi
	fi
	# The builder skips engines that are up to date with their ONNX model, this TensorRT and this
	# GPU; the ReID profile covers the installed config's detector.max_detections.
	say "TensorRT engines for this device (python -m edge engines)"
	if ((DRY_RUN)); then
		say "would run: EDGE_ARTIFACTS=$STATE_DIR/artifacts $python -m edge engines --config $CONF_DIR/edge.toml"
	else
		(cd "$APP_DIR" && EDGE_ARTIFACTS=$STATE_DIR/artifacts "$python" -m edge engines \
			--config "$CONF_DIR/edge.toml")
	fi
}

enable_service() {
	local models_ready=$1
	systemctl is-enabled --quiet "$SERVICE" 2>/dev/null ||
		act "enable $SERVICE at boot" systemctl enable "$SERVICE"
	if [[ -f $CONF_DIR/power.env ]] && ! systemctl is-enabled --quiet "$POWER_SERVICE" 2>/dev/null; then
		act "enable $POWER_SERVICE at boot" systemctl enable "$POWER_SERVICE"
	fi
	# Enabling works offline; the rest needs a running systemd (not so in a chroot or an image build).
	if ! systemd_running; then
		warn "systemd is not running here: $SERVICE is enabled and starts at the next boot"
		return 0
	fi
	((UNITS_CHANGED)) && act "reload systemd" systemctl daemon-reload
	if ((!START)); then
		say "not started (--no-start): systemctl start $SERVICE"
	elif ((!models_ready)); then
		warn "not started: the models are missing"
	elif ((CHANGES)) || ! systemctl is-active --quiet "$SERVICE"; then
		act "(re)start $SERVICE" systemctl restart "$SERVICE"
	fi
}

main() {
	local models_ready=1
	check_platform
	prefixed && say "laying out files under $PREFIX only (no apt, virtualenv, user, engines, systemctl)"
	prefixed || install_apt_packages
	install_code
	prefixed || install_venv
	prefixed || install_user
	install_config
	install_models || models_ready=0
	prefixed || install_web_password
	install_units
	if ! prefixed; then
		((models_ready)) && build_engines
		enable_service "$models_ready"
	fi
	if ((DRY_RUN)); then
		say "dry run: $CHANGES changes to make, none made"
	elif ((CHANGES)); then
		say "done: $CHANGES changes"
	else
		say "done: already installed, nothing changed"
	fi
}

main
