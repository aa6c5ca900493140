# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv/ with the
# pinned stack on first use (tools/misc/install_env.sh) and reuse it afterwards.
PY := .venv/bin/python
DEMO_DIR := work_dirs/demo_yolov3_digits

.PHONY: venv demo lint test test-fast clean-demo

venv:
	@bash tools/misc/install_env.sh

# Generate the digits detection set, train YOLOv3-XFormer on it from scratch on the CPU,
# evaluate COCO mAP and draw predicted boxes on val images.
demo: venv
	$(PY) tools/misc/make_digits.py det
	$(PY) tools/train.py configs/xformer_yolov3_digits.py --work-dir $(DEMO_DIR)
	$(PY) tools/test.py configs/xformer_yolov3_digits.py $$(cat $(DEMO_DIR)/last_checkpoint) \
		--work-dir $(DEMO_DIR) --show-dir predictions
	@echo "Predicted boxes drawn in $(DEMO_DIR)/<timestamp>/predictions/"

# OpenMMLab's linters (flake8, isort, yapf) as .pre-commit-config.yaml declares them.
lint: venv
	PATH=$(CURDIR)/.venv/bin:$$PATH .venv/bin/pre-commit run --all-files --show-diff-on-failure

test: venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not slow"

clean-demo:
	rm -rf $(DEMO_DIR)
