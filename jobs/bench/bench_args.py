"""argparse types of the bench helpers: a bad value is a usage error that names the argument (exit 2), not a
traceback or a ZeroDivisionError after torch is loaded."""
import argparse


def whole(text, least):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value}: must be >= {least}")
    return value


def positive(text):
    return whole(text, 1)


def non_negative(text):
    return whole(text, 0)


def positive_list(text):
    """'2048,4096' -> [2048, 4096], each >= 1."""
    return [positive(item) for item in text.split(",")]
