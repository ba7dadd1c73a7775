"""Backend adapters, all behind the small :class:`providers.base.Provider` interface."""
