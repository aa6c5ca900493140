"""Full and read-only disks under every tool of tools/deployment that writes: one line that says
what to change, before the work where the space needed is known, and nothing left behind.

The disks are small tmpfs mounts (``mount -t tmpfs``, then ``mount -o remount,ro``): the tests
skip where mounting is not permitted (not root, or no CAP_SYS_ADMIN in a container)."""
import errno
import glob
import os
import os.path as osp
import subprocess

import pytest
import torch
from conftest import digits_options

from mmxformer.cli import UsageError, exit_on_usage_error
from mmxformer.deployment.export.network import build_network
from mmxformer.deployment.export.onnx import export_onnx
from mmxformer.utils.config import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLASSIFIER = osp.join(ROOT, 'configs', 'xformer-xxs_digits.py')
FULL = r'{out} needs at least [\d.]+ MiB \({what}\), and {disk} has 0 B free: free some space ' \
       'there or write elsewhere'
READ_ONLY = r'{out}: no file can be created in {disk} \(Read-only file system\)'


@pytest.fixture
def disk(tmp_path):
    """``disk(name, size, full=False, read_only=False)``: a directory of ``tmp_path`` on a tmpfs
    of ``size`` (mount's syntax, e.g. '1m'), filled up or read-only; unmounted afterwards."""
    mounted = []

    def mount(name, size='1m', full=False, read_only=False):
        path = tmp_path / name
        path.mkdir()
        result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs',
                                 str(path)],
                                capture_output=True,
                                text=True)
        if result.returncode:
            pytest.skip(f'mounting a tmpfs is not permitted here: {result.stderr.strip()}')
        mounted.append(path)
        if full:
            fd = os.open(path / 'filler', os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(fd, bytes(1 << 16))
            except OSError as error:
                assert error.errno == errno.ENOSPC
            finally:
                os.close(fd)
        if read_only:
            subprocess.run(['mount', '-o', 'remount,ro', str(path)], check=True)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(['umount', str(path)], check=True)


def left_in(path):
    """What a directory holds besides the filler, hidden files included."""
    return sorted(name for name in os.listdir(path) if name != 'filler')


@pytest.fixture(scope='module')
def classifier(tiny_sets, tmp_path_factory):
    """The digits classifier's config options (its tiny set), and a checkpoint of it."""
    options = digits_options('cls', tiny_sets['cls'])
    checkpoint = tmp_path_factory.mktemp('weights') / 'classifier.pth'
    cfg = load_config(CLASSIFIER, options)
    torch.save(dict(state_dict=build_network(cfg).model.state_dict()), checkpoint)
    return [f'{key}={value}' for key, value in options.items()], str(checkpoint)


@pytest.mark.parametrize('tool,what', [
    ('export_onnx.py', "the model's weights"),
    ('export_executorch.py', "the model's weights"),
    ('quantize_onnx.py',
     "the float32 export, its optimized copy, onnxruntime's copy of that and the int8 file"),
])
def test_an_export_to_a_full_or_read_only_disk_is_refused_up_front(tool, what, disk, classifier,
                                                                   load_tool):
    if tool == 'export_executorch.py':
        pytest.importorskip('executorch.exir', reason='ExecuTorch is not installed')
    cfg_options, checkpoint = classifier
    main = load_tool(f'deployment/{tool}').main
    full, read_only = disk('full', full=True), disk('read_only', read_only=True)
    argv = [CLASSIFIER, checkpoint, '--shape', '32', '32', '--cfg-options', *cfg_options]
    out = full / 'model.onnx'
    with pytest.raises(
            SystemExit,
            match=f'^Export failed, {out} not written: '
            f'{FULL.format(out=out, what=what, disk=full)}$'):
        main([*argv, '--out', str(out)])
    assert left_in(full) == []
    out = read_only / 'model.onnx'
    with pytest.raises(UsageError, match=f'^--out {READ_ONLY.format(out=out, disk=read_only)}$'):
        main([*argv, '--out', str(out)])


def test_a_disk_that_fills_up_during_the_export_is_one_line(disk, classifier, load_tool):
    cfg_options, checkpoint = classifier
    # room for the weights, which the check up front asks for, not for the whole file
    weights = sum(p.numel() * 4 for p in build_network(load_config(CLASSIFIER)).parameters())
    small = disk('small', size=f'{weights * 21 // 20 // 1024}k')
    out = small / 'model.onnx'
    main = load_tool('deployment/export_onnx.py').main
    with pytest.raises(SystemExit, match=f'^error: {out}: No space left on device$'):
        exit_on_usage_error(
            lambda: main([CLASSIFIER, checkpoint, '--shape', '32', '32', '--out',
                          str(out)]))
    assert left_in(small) == []


@pytest.mark.parametrize('room_for', ['fp32', 'fp32+optimized'])
def test_onnxruntime_copy_on_a_full_disk_is_named(room_for, disk, tmp_path):
    from mmxformer.deployment.quantize.onnxruntime import optimize_onnx, quantize_onnx
    export_onnx(load_config(CLASSIFIER), str(tmp_path / 'fp32.onnx'), (32, 32))
    optimize_onnx(str(tmp_path / 'fp32.onnx'), str(tmp_path / 'optimized.onnx'))
    # room for the float32 file and, in the second case, its optimized copy; not for the next
    # copy (the optimized file; then onnxruntime's copy of that), which onnxruntime fails to
    # write (an InvalidProtobuf), or writes cut short and fails to read back (a DecodeError)
    size = sum((tmp_path / f'{name}.onnx').stat().st_size for name in room_for.split('+'))
    small = disk('small', size=f'{(size + (1 << 20)) // 1024}k')
    fp32 = small / 'fp32.onnx'
    fp32.write_bytes((tmp_path / 'fp32.onnx').read_bytes())
    with pytest.raises(OSError) as error:
        quantize_onnx(str(fp32), str(small / 'int8.onnx'), [torch.randn(1, 3, 32, 32)])
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, str(fp32))
    assert left_in(small) == ['fp32.onnx']


def test_metrics_to_a_full_or_read_only_disk_are_refused_before_evaluating(
        disk, classifier, load_tool, monkeypatch):
    cfg_options, checkpoint = classifier
    tool = load_tool('deployment/test_deployed.py')
    monkeypatch.setattr(tool, 'evaluate_deployed', lambda *args: pytest.fail('evaluated'))
    full, read_only = disk('full', full=True), disk('read_only', read_only=True)
    argv = [CLASSIFIER, checkpoint, 'model.onnx', '--cfg-options', *cfg_options]
    out = full / 'metrics.json'
    with pytest.raises(
            UsageError,
            match=rf'^--out {out} needs at least 4.0 KiB \(the metrics\), and {full} has 0 B free'):
        tool.main([*argv, '--out', str(out)])
    out = read_only / 'metrics.json'
    with pytest.raises(UsageError, match=f'^--out {READ_ONLY.format(out=out, disk=read_only)}$'):
        tool.main([*argv, '--out', str(out)])
    assert left_in(full) == []


@pytest.mark.needs('mmdeploy', 'mmpretrain')
def test_mmdeploy_conversion_to_a_full_or_read_only_disk_is_refused_up_front(
        disk, classifier, tiny_sets, load_tool):
    _, checkpoint = classifier
    main = load_tool('deployment/mmdeploy_convert.py').main
    full, read_only = disk('full', full=True), disk('read_only', read_only=True)
    image = sorted(glob.glob(osp.join(tiny_sets['cls'], 'test', '*', '*.png')))[0]
    deploy_cfg = osp.join(ROOT, 'configs', 'mmdeploy', 'classification_onnxruntime_static-32x32.py')
    argv = [deploy_cfg, CLASSIFIER, checkpoint, image, '--work-dir']
    out = full / 'work' / 'end2end.onnx'
    with pytest.raises(
            SystemExit,
            match=f"^Not converted: {FULL.format(out=out, what='the model.s weights', disk=full)}$"
    ):
        main([*argv, str(full / 'work')])
    assert left_in(full) == []
    work_dir = read_only / 'work'
    with pytest.raises(
            SystemExit,
            match=f'^Not converted: --work-dir '
            f'{READ_ONLY.format(out=work_dir, disk=read_only)}$'):
        main([*argv, str(work_dir)])
