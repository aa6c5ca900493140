# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv/ with the
# pinned stack on first use (tools/misc/install_env.sh) and reuse it afterwards.
PY := .venv/bin/python
DEMO_DIR := work_dirs/demo_yolov3_digits

.PHONY: venv venv-classic demo lint test test-fast test-classic clean-demo

venv:
	@bash tools/misc/install_env.sh

# The classic OpenMMLab stack (torch 2.1.2, mmcv 2.1.0: requirements/classic.txt) in .venv-classic/
venv-classic:
	@VENV=.venv-classic STACK=classic bash tools/misc/install_env.sh

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

# Two workers, one per core, each taking whole test files (a module's fixtures are built once).
XDIST := -n 2 --dist loadfile

test: venv
	$(PY) -m pytest $(XDIST)

test-fast: venv
	$(PY) -m pytest $(XDIST) -m "not slow"

# The suite's parts that concern the classic stack: the model, the configs and their trainings and
# tests through tools/train.py and tools/test.py, the inference APIs, checkpoints, registration,
# the README's examples. The exporters and mmdeploy need the pinned stack and are left out.
test-classic: venv-classic
	.venv-classic/bin/python -m pytest $(XDIST) -rs tests/test_models tests/test_apis tests/test_configs \
		tests/test_checkpoint tests/test_packaging/test_import_effects.py tests/test_readme.py \
		tests/test_tools/test_train_test_inputs.py

clean-demo:
	rm -rf $(DEMO_DIR)
