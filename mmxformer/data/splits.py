"""A split of a config's data set, read as its test pipeline reads it."""
import copy


def split_loader_cfg(cfg, split: str) -> dict:
    """The dataloader config of a split of the config's dataset, read through the test pipeline.

    Args:
        cfg (mmengine.Config): The config.
        split (str): 'train' (its ``train_dataloader``, not shuffled; the innermost dataset of
            a wrapper such as mmdet's ``RepeatDataset`` gets the test pipeline, so that no
            augmentation runs) or 'test' (its ``test_dataloader``, else ``val_dataloader``).

    Returns:
        dict: the dataloader config, without workers.
    """
    test_cfg = copy.deepcopy(dict(cfg.get('test_dataloader') or cfg.val_dataloader))
    loader_cfg = test_cfg
    if split == 'train':
        loader_cfg = copy.deepcopy(dict(cfg.train_dataloader))
        innermost(loader_cfg['dataset'])['pipeline'] = innermost(test_cfg['dataset'])['pipeline']
        # the first images of the set, the same ones every time
        loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
    elif split != 'test':
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    loader_cfg.update(num_workers=0, persistent_workers=False)
    return loader_cfg


def innermost(dataset: dict) -> dict:
    """The dataset config inside dataset wrappers (mmdet's ``RepeatDataset``, ...)."""
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset
