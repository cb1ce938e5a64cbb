"""The machines a plan runs on: nodes x devices, the intra- and inter-node profiles.

    from accelcal.calibrate.profile import Profile
    from accelcal.planner.cluster import Cluster
    c = Cluster.homogeneous(Profile.load("profiles/h100.yaml"), nodes=2)
    c = Cluster.homogeneous(p, nodes=8, devices_per_node=8, inter_node_profile=q)
    c = Cluster([DeviceGroup("h100", p, nodes=2), DeviceGroup("a100", q, nodes=1)])

Devices are numbered node-major; a group of ``n`` consecutive devices that
stays inside one node uses the profile's ``intra_node`` collectives, one that
crosses a node boundary uses ``inter_node`` collectives, looked up in the
inter-node profile (default: the node profile itself).  In a heterogeneous
cluster each :class:`DeviceGroup` is planned on its own (TP, PP, EP and SP stay
inside one device type) and data parallelism spans the groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from accelcal.calibrate.profile import ProfileQueries

__all__ = ["Cluster", "DeviceGroup"]


@dataclass(frozen=True)
class DeviceGroup:
    """Identical devices: ``nodes`` x ``devices_per_node`` sharing one profile."""

    name: str
    """Label used in reports (default: the profile's device name)."""
    profile: ProfileQueries
    """accelcal.calibrate.profile.Profile of one device and its intra-node links."""
    nodes: int = 1
    """Nodes in this group."""
    devices_per_node: int | None = None
    """Devices per node (None: the profile's identity.devices_per_node)."""
    inter_node_profile: ProfileQueries | None = None
    """Profile whose inter_node collectives link these nodes (None: ``profile``)."""

    def __post_init__(self) -> None:
        if self.devices_per_node is None:
            object.__setattr__(self, "devices_per_node", int(self.profile.identity.devices_per_node))
        for f in ("nodes", "devices_per_node"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"cluster group {self.name!r}: {f} must be an integer >= 1, got {v!r}")

    @property
    def devices(self) -> int:
        return self.nodes * self.devices_per_node

    @property
    def memory_capacity_bytes(self) -> float:
        return float(self.profile.identity.memory_capacity_bytes)


@dataclass(frozen=True)
class Cluster:
    """One or more device groups; DP spans groups."""

    groups: list[DeviceGroup] = field(default_factory=list)
    """Device groups (one for a homogeneous cluster)."""

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("cluster: needs at least one device group")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"cluster: group names must be unique, got {names}")

    @classmethod
    def homogeneous(cls, profile: ProfileQueries, nodes: int = 1, devices_per_node: int | None = None,
                    inter_node_profile: ProfileQueries | None = None, name: str | None = None) -> "Cluster":
        return cls([DeviceGroup(name or str(profile.identity.device_name), profile, nodes,
                                devices_per_node, inter_node_profile)])

    @property
    def devices(self) -> int:
        return sum(g.devices for g in self.groups)
