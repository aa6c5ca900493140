# Only what every user needs: the other modules of utils are tool helpers, imported by path
# (mmxformer.utils.config, ...), so that building a model does not import them.
from .setup_env import register_all_modules

__all__ = ['register_all_modules']
