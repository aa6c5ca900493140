from .xformer import XFormer

__all__ = ['XFormer']
