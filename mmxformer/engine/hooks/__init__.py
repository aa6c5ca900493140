from .random_state_hook import RandomStateHook, get_random_state, set_random_state

__all__ = ['RandomStateHook', 'get_random_state', 'set_random_state']
