"""The plugin needs only the toolboxes a user has: tests of a missing toolbox skip, not fail."""
import os
import subprocess
import sys

from conftest import ROOT


def test_tests_of_a_missing_toolbox_skip():
    env = dict(os.environ, MMXFORMER_TEST_HIDE='mmdet')
    result = subprocess.run([
        sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-m', 'not slow', '-rs',
        'tests/test_configs/test_detection.py', 'tests/test_apis/test_setup_env.py'
    ],
                            cwd=ROOT,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert ' skipped' in summary and 'failed' not in summary and 'error' not in summary, summary
    assert 'needs mmdet, not installed here' in result.stdout
