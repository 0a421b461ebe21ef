# Set-up and everyday commands. Everything Python runs in the virtualenv at .venv/.
# `make demo` and `make test` do all set-up themselves on a fresh Debian 12 / Ubuntu machine.

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the project needs: venv support, the apt tooling the data step uses,
# systemd-analyze + shellcheck for the deploy/ tests, GStreamer with the plugins the runtime uses
# (x264enc is in -ugly, rtspsrc in -good, avdec_h264 in -libav), gst-rtsp-server, and what
# PyGObject builds with; mosquitto (a real MQTT broker for the tests) and openssl (their TLS CA).
APT_PACKAGES := python3-venv dpkg-dev systemd shellcheck gstreamer1.0-tools \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gstreamer-1.0 \
	gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 libgirepository1.0-dev \
	libcairo2-dev pkg-config mosquitto openssl bubblewrap faketime chromium chromium-driver

.PHONY: demo test system-deps data models evaluate lint typecheck bench clean engines

system-deps: $(VENV)/.system-deps
$(VENV)/.system-deps: Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi
	@# `apt-get download` (data step) needs package lists, which a fresh container lacks.
	@[ -n "$$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial -e auxfiles)" ] \
		|| $(SUDO) apt-get update -qq
	@mkdir -p $(VENV) && touch $@

$(VENV)/.installed: requirements.txt requirements-export.txt requirements-dev.txt | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@# TensorRT's type stubs without TensorRT itself (it cannot be installed off a Jetson), made
	@# readable by mypy: see typings/fix_tensorrt_stubs.py.
	$(PY) -m pip install -q --no-deps tensorrt-stubs==10.13.0.35.1
	$(PY) typings/fix_tensorrt_stubs.py
	touch $@

data: $(VENV)/.installed
	$(PY) -m export data

# Trained once: delete artifacts/models/colorizer_*.keras (or `make clean`) to train again.
MODELS_DIR := artifacts/models
# Each model's recipe (epochs, batch, samples) is its default in `export train --help`.
$(MODELS_DIR)/colorizer_%.keras: | data
	$(PY) -m export train --model $*

$(MODELS_DIR)/colorizer.onnx: $(MODELS_DIR)/colorizer_rgb.keras $(MODELS_DIR)/colorizer_chroma.keras
	$(PY) -m export onnx

models: $(MODELS_DIR)/colorizer.onnx track-models

evaluate: models
	$(PY) -m export evaluate

# The sample video's camera: the general colorizer adapted to its scene from the video's first
# half in color (the second half is what the adaptation never saw).
SAMPLE_VIDEO := artifacts/data/opencv/vtest.avi
CAMERA_MODEL := $(MODELS_DIR)/colorizer_vtest.onnx
$(CAMERA_MODEL): $(MODELS_DIR)/colorizer.onnx
	$(PY) -m export adapt --video $(SAMPLE_VIDEO) --holdout 0.5 --output $@

# The sample video seen in gray, colorized by the general and by the adapted model
# (artifacts/outputs/demo/colorized_{general,adapted}.mp4, each with a .preview.png), then the
# whole runtime on it as a grayscale camera with its adapted model: video segments in
# artifacts/outputs/demo/recordings/cam0/ (`python -m edge recordings --dir ...`).
DEMO := artifacts/outputs/demo
demo: evaluate $(CAMERA_MODEL)
	$(PY) -m edge colorize $(SAMPLE_VIDEO) --output $(DEMO)/colorized_general.mp4
	$(PY) -m edge colorize $(SAMPLE_VIDEO) --model $(CAMERA_MODEL) \
		--output $(DEMO)/colorized_adapted.mp4
	$(PY) -m edge run --config deploy/edge.toml --source $(SAMPLE_VIDEO) source.format=GRAY8 \
		source.colorizer_model=$(CAMERA_MODEL) output.dir=$(DEMO)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

test: data lint typecheck
	$(VENV)/bin/pytest

# On the Jetson: FP16 TensorRT engines beside the ONNX models; up-to-date ones are skipped.
# Its virtualenv sees JetPack's TensorRT; the builder runs alone, without TensorFlow or torch.
engines:
	@[ -x $(PY) ] || { echo "first: python3 -m venv --system-site-packages $(VENV) &&" \
		"PATH=/usr/local/cuda/bin:\$$PATH $(VENV)/bin/pip install -r requirements-jetson.txt" \
		"(pycuda's build needs JetPack's nvcc)"; exit 2; }
	$(PY) -m edge engines

# Benchmarks (python -m benchmarks --help): results, plots and Markdown under artifacts/bench/.
# `drift` exits non-zero when FP16 drifts past benchmarks/drift.toml, so `make bench` stops there.
MOT_SAMPLE := artifacts/data/motmetrics/TUD-Campus
bench: models $(CAMERA_MODEL)
	$(PY) -m benchmarks latency --frames 300
	$(PY) -m benchmarks drift --camera-colorizer $(CAMERA_MODEL)
	$(PY) -m benchmarks tracking --gt $(MOT_SAMPLE)/gt.txt --tracks $(MOT_SAMPLE)/test.txt
	$(PY) -m benchmarks compare --frames 100 --rounds 2
	$(PY) -m benchmarks interval
	$(PY) -m benchmarks mqtt
	$(PY) -m benchmarks multicam
	$(PY) -m benchmarks multicam --name multicam-cpu pipeline.batch_size=1 \
		pipeline.detect_workers=$$(nproc)
	$(PY) -m benchmarks faults

clean:
	rm -rf artifacts

# Detection and tracking: YOLOv8 + ReID models, the track command on the sample video.
.PHONY: track-models track
$(MODELS_DIR)/yolov8_detector.onnx: | data
	$(PY) -m export yolo

$(MODELS_DIR)/reid_mobilenetv2.onnx: | data
	$(PY) -m export reid

track-models: $(MODELS_DIR)/yolov8_detector.onnx $(MODELS_DIR)/reid_mobilenetv2.onnx

track: track-models
	$(PY) -m edge track artifacts/data/opencv/vtest.avi

# INT8 detector and embedder (`python -m export quantize --help`): calibrated on the first half of
# the sample video (pass your camera's footage with --calib), gated on its second half;
# NAME_int8.onnx beside each FP32 model, used with detector.precision / tracker.reid_precision =
# "int8". The flavour is TensorRT's where TensorRT is installed (then `python -m edge engines
# --int8`), ONNX Runtime's CPU one elsewhere. Not part of `make demo`.
.PHONY: int8
int8: track-models
	$(PY) -m export quantize --model detector
	$(PY) -m export quantize --model embedder

# On the device: install or update the systemd service (deploy/install.sh --help says what it does).
.PHONY: install
install:
	$(SUDO) deploy/install.sh
