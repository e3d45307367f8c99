"""The one error type of the data layer."""


class DatasetError(ValueError):
    """Bad or missing input data; the message names the file or option and says what to do."""
