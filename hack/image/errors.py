"""The image build's error type."""


class ImageBuildError(RuntimeError):
    """The image could not be built or its recipe read; the message says why."""
