"""A small module to try diffucode on: `diffucode infill examples/stats.py:12-13`."""


def mean(values):
    """Arithmetic mean of a non-empty sequence."""
    return sum(values) / len(values)


def variance(values):
    """Population variance."""
    m = mean(values)
    squares = [(v - m) ** 2 for v in values]
    return sum(squares) / len(values)


def median(values):
    """Middle value (mean of the two middle values for an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    if n % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


if __name__ == "__main__":
    data = [2, 4, 4, 4, 5, 5, 7, 9]
    print(mean(data), variance(data), median(data))
