"""Redis's HyperLogLog string, read and written without Redis: how a sketch moves between
Redis and the stores that keep registers (see `sketch.py`).

The string is a 16-byte header — `HYLL`, the encoding (0 dense, 1 sparse), three unused bytes,
and a cached count whose top bit set means "count again" — then 2**14 registers: dense, six bits
each, packed from the lowest bit; or sparse, runs of equal registers (Redis's `hyperloglog.c`).
"""

from collections.abc import Sequence

PRECISION = 14
REGISTERS = 1 << PRECISION
HIGHEST_RANK = 64 - PRECISION + 1
"""The largest rank a Redis register holds."""

MAGIC = b"HYLL"
HEADER_BYTES = 16
DENSE, SPARSE = 0, 1
DENSE_BYTES = HEADER_BYTES + (REGISTERS * 6 + 7) // 8
STALE_COUNT = bytes(7) + b"\x80"
"""A cached count Redis does not trust, so its first PFCOUNT counts the registers."""


def registers(data: bytes) -> list[int]:
    """The 2**14 registers of a Redis HyperLogLog string; ValueError if it is not one."""
    if data[:4] != MAGIC or len(data) < HEADER_BYTES:
        raise ValueError("not a Redis HyperLogLog (no HYLL header)")
    body = data[HEADER_BYTES:]
    if data[4] == DENSE:
        if len(data) != DENSE_BYTES:
            raise ValueError(f"a dense Redis HyperLogLog has {DENSE_BYTES} bytes, not {len(data)}")
        found = [0] * REGISTERS
        for register in range(REGISTERS):
            bit = register * 6
            byte, shift = divmod(bit, 8)
            pair = body[byte] | (body[byte + 1] << 8 if byte + 1 < len(body) else 0)
            found[register] = (pair >> shift) & 63
    elif data[4] == SPARSE:
        found = _sparse(body)
    else:
        raise ValueError(f"unknown Redis HyperLogLog encoding {data[4]}")
    if max(found) > HIGHEST_RANK:
        raise ValueError(f"a Redis HyperLogLog register above {HIGHEST_RANK}")
    return found


def dense(ranks: Sequence[int]) -> bytes:
    """The dense Redis HyperLogLog string of 2**14 registers, its count to be made anew."""
    body = bytearray(DENSE_BYTES - HEADER_BYTES + 1)  # one spare byte for the last register
    for register, rank in enumerate(ranks):
        byte, shift = divmod(register * 6, 8)
        packed = rank << shift
        body[byte] |= packed & 0xFF
        body[byte + 1] |= packed >> 8
    return MAGIC + bytes([DENSE, 0, 0, 0]) + STALE_COUNT + bytes(body[:-1])


def _sparse(body: bytes) -> list[int]:
    """The registers of a sparse body: runs of zeros (ZERO: 00xxxxxx, XZERO: 01xxxxxx
    yyyyyyyy) and of one value (VAL: 1vvvvvxx)."""
    found: list[int] = []
    at = 0
    while at < len(body):
        opcode = body[at]
        if opcode & 0x80:
            found.extend([((opcode >> 2) & 0x1F) + 1] * ((opcode & 0x03) + 1))
            at += 1
        elif opcode & 0x40:
            if at + 1 >= len(body):
                raise ValueError("a sparse Redis HyperLogLog ends inside an opcode")
            found.extend([0] * ((((opcode & 0x3F) << 8) | body[at + 1]) + 1))
            at += 2
        else:
            found.extend([0] * ((opcode & 0x3F) + 1))
            at += 1
        if len(found) > REGISTERS:
            break
    if len(found) != REGISTERS:
        raise ValueError(f"a sparse Redis HyperLogLog of {len(found)} registers, not {REGISTERS}")
    return found
