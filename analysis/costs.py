"""Cost of a run from measured usage and a documented price setting.

Defaults are AWS Fargate on-demand Linux/x86 prices in us-east-1 (USD 0.04048 per vCPU-hour,
USD 0.004445 per GB-hour), a fair public reference for "a container that ran this job". The
service overrides them through its settings (PMOPS_PRICE_CPU_HOUR, PMOPS_PRICE_GB_HOUR).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PriceSetting:
    cpu_hour_usd: float = 0.04048
    gb_hour_usd: float = 0.004445

    def cost(self, cpu_seconds: float, peak_memory_bytes: int, wall_seconds: float) -> float:
        """CPU-hours actually used plus peak memory held for the wall time, in USD."""
        cpu = cpu_seconds / 3600 * self.cpu_hour_usd
        memory = peak_memory_bytes / 1e9 * wall_seconds / 3600 * self.gb_hour_usd
        return cpu + memory

    def describe(self) -> str:
        return (
            f"CPU-hours x ${self.cpu_hour_usd}/vCPU-hour + peak GB x wall hours x "
            f"${self.gb_hour_usd}/GB-hour"
        )


def money_text(usd: float) -> str:
    """'$2.31'; fractions of a cent keep four decimals so small runs do not read as free."""
    return f"${usd:.2f}" if usd >= 0.1 else f"${usd:.4f}"
