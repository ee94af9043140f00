"""Seed-list parsing: `0-9`, `0,3,7`, `4`, or mixes such as `0-2,7`."""

from pex_jax.errors import ConfigError


def parse_seeds(spec: str | int | list | tuple) -> list[int]:
    """Parse a seed specification into a sorted list of unique non-negative ints."""
    if isinstance(spec, int):
        spec = str(spec)
    if isinstance(spec, (list, tuple)):
        spec = ",".join(str(s) for s in spec)
    text = str(spec).strip().replace(" ", "")
    hint = "use e.g. SEED=4, SEED=0-9 or SEED=0,3,7"
    if not text:
        raise ConfigError(f"empty seed specification; {hint}")
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ConfigError(f"bad seed specification {spec!r} (part {part!r}); {hint}")
        if sep:
            a, b = int(lo), int(hi)
            if b < a:
                raise ConfigError(f"bad seed range {part!r}: end {b} is below start {a}; {hint}")
            seeds.extend(range(a, b + 1))
        else:
            seeds.append(int(lo))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seed specification {spec!r} lists a seed twice; {hint}")
    return sorted(seeds)
