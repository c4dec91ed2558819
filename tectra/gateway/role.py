"""The `gateway` role (`tectra run gateway`, `tectra@gateway`): a GatewayService inside a
RoleShell, READY while the venue session is logged in and DEGRADED while it is not (orders are
still judged and refused or queued by the session layer, never silently lost)."""

from __future__ import annotations

import sys

from tectra.core.config import TectraConfig
from tectra.gateway.control import add_gateway_control
from tectra.gateway.service import GatewayService
from tectra.roles.shell import RoleShell
from tectra.schema import LifecycleState

HOUSEKEEPING_S = 0.05
GIL_SWITCH_INTERVAL_S = 0.0005
"""The FIX threads, the venue reader and this loop share one GIL. With Python's default 5 ms
switch interval a thread waiting on a socket that became readable can wait a whole interval
behind a busy one; 0.5 ms bounds that wait (the order path's steps are ~100 us each)."""


def run_gateway(config: TectraConfig) -> int:
    # The service is built inside the shell (its metrics live in the shell's registry) while
    # the control socket starts with the shell: the servicer finds the service through this.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    holder: list[GatewayService] = []
    control = add_gateway_control(lambda: holder[0] if holder else None)
    with RoleShell("gateway", config, io_path="tcp", services=[control]) as shell:
        shell.lifecycle.transition(LifecycleState.WARMUP, "starting FIX acceptor and venue link")
        service = GatewayService(config, metrics=shell.metrics)
        holder.append(service)
        shell.details["venue"] = lambda: (
            f"{config.gateway.venue_name} {'up' if service.venue_up else 'down'}"
        )
        shell.details["fix_port"] = lambda: str(config.gateway.fix_port)
        shell.details["open_orders"] = lambda: str(service.core.open_orders())
        shell.details["limits_version"] = lambda: str(service.core.risk.limits.version)
        shell.details["kill_block"] = lambda: "ok" if service.kill_view.available else "UNAVAILABLE"
        service.start()
        shell.ready("FIX acceptor listening")
        try:
            up = True
            while not shell.stopping:
                shell.heartbeat()
                service.housekeeping()
                if service.venue_up != up:
                    up = service.venue_up
                    state = LifecycleState.READY if up else LifecycleState.DEGRADED
                    why = "venue session logged in" if up else "venue session down"
                    shell.lifecycle.transition(state, why)
                shell.wait(HOUSEKEEPING_S)
        finally:
            service.stop()
    return 0
