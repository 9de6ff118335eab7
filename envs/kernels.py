"""Compiled (numba) kernels of the simulator and of the MDP pieces, batched over rows ``b``.

They compute exactly what the numpy reference code in :mod:`envs.sim`, :mod:`envs.dynamics` and
:mod:`envs.demand` computes (same formulas, same order of operations; sums over many terms may differ in the
last bits) and are used when numba is installed (``ENABLED``; ``LWMECPS_NUMBA=0`` forces the numpy path).
In both paths every row of a batch is independent of the others (the M/M/c spill loop stops per row).
"""

from __future__ import annotations

import math
import os

import numpy as np

from envs import latency as lat

try:  # numba is optional: without it everything runs on the numpy reference path
    import numba

    njit = numba.njit(cache=True, nogil=True)
    ENABLED = os.environ.get("LWMECPS_NUMBA", "1") != "0"
except ImportError:  # numba missing
    ENABLED = False

    def njit(fn):  # type: ignore[no-redef]
        return fn


_STEP, _CPU_CAP, _RAM_CAP = lat.THROTTLE_STEP, lat.THROTTLE_CPU_CAP, lat.THROTTLE_RAM_CAP
_DECAY, _THRESHOLD, _MAX_MS = lat.THROTTLE_DECAY, lat.THROTTLE_THRESHOLD, lat.THROTTLE_MAX_LATENCY_MS
_GRID = lat.THROTTLE_GRID


@njit
def _erlang_c(servers, offered):
    if servers <= 0:
        return 0.0
    b, out = 1.0, 0.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    out = b
    rho = offered / servers
    return out / (1.0 - rho * (1.0 - out))


@njit
def _tail(pw, theta, mu, e_mu, t):
    diff = mu - theta
    if abs(diff) < 1e-9 * max(mu, 1.0):
        hypo = (1.0 + mu * t) * e_mu
    else:
        hypo = (mu * math.exp(-theta * t) - theta * e_mu) / diff
    p = (1.0 - pw) * e_mu + pw * hypo
    return min(max(p, 0.0), 1.0)


@njit
def _route(
    b, rep, users, rate, mu, order, mmc, attempts, rho_max, load, rem, ptr, npath, pos, take, off, acc, act,
    use_table, posmask, ctz, svc_of, first_slot, n_slots, pattern,
):  # fmt: skip
    """Routing with fail-over for row ``b``: fills ``load`` (K,), the paths and ``rem`` (unserved per element).

    Elements ``e = s * C + c`` (service, cell); ``order`` is ``(S * C, A)``. Only elements with load left are
    revisited by later attempts (``act`` lists them); the loop stops as the numpy code does, when no element
    has more than 1e-9 requests/s left. With ``use_table`` the next hosted position is looked up:
    ``posmask[e, pattern]`` has bit ``a`` set when path position ``a`` of element ``e`` is hosted under the
    service's hosted-slot ``pattern``, and ``ctz`` counts trailing zeros (``ctz[0] >= A``).
    """
    A = order.shape[1]
    K = rep.shape[1]
    S, C = rate.shape[0], users.shape[1]
    n = 0
    for s in range(S):
        for c in range(C):
            e = s * C + c
            lam = users[b, c] * rate[s]
            rem[e] = lam
            npath[e] = 0
            ptr[e] = 0
            if lam > 0.0:
                act[n] = e
                n += 1
    for k in range(K):
        load[k] = 0.0
    if use_table:  # hosted pattern of every service's slots, one bit per slot
        for s in range(S):
            h = 0
            for j in range(n_slots[s]):
                if rep[b, first_slot[s] + j] > 0:
                    h |= 1 << j
            pattern[s] = h
    stuck = False  # some element has load left and no host left to try
    for _ in range(attempts):
        for k in range(K):
            off[k] = 0.0
            acc[k] = 0.0
        m = 0
        for i in range(n):
            e = act[i]
            a = ptr[e]
            if use_table:  # first hosted position >= a, branch-free
                a += ctz[posmask[e, pattern[svc_of[e]]] >> a]
            else:
                while a < A and (order[e, a] == K or rep[b, order[e, a]] <= 0):
                    a += 1
            ptr[e] = a
            if a < A:
                off[order[e, a]] += rem[e]
                act[m] = e
                m += 1
            elif rem[e] > 1e-9:
                stuck = True
        n = m
        if mmc:  # off becomes the admitted fraction per slot
            for k in range(K):
                if off[k] > 0.0:
                    spare = max(rep[b, k] * mu[k] * rho_max - load[k], 0.0)
                    off[k] = min(spare / off[k], 1.0)
                else:
                    off[k] = 1.0
        left = stuck
        m = 0
        for i in range(n):
            e = act[i]
            a = ptr[e]
            k = order[e, a]
            t = rem[e] * off[k] if mmc else rem[e]
            if t > 0.0:  # a path that took nothing adds nothing to any sum: not recorded
                acc[k] += t
                p = npath[e]
                pos[e, p] = a
                take[e, p] = t
                npath[e] = p + 1
                rem[e] = rem[e] - t
            ptr[e] = a + 1
            if rem[e] > 0.0:
                act[m] = e
                m += 1
                if rem[e] > 1e-9:
                    left = True
        n = m
        for k in range(K):
            load[k] += acc[k]
        if not left:
            break


@njit
def slot_kernel(
    rep, users, prev, has_prev, rate, mu, order, onet, emu, tbud, mmc, attempts, rho_max, timeout, slot_seconds,
    cpu, ram, out_lat, out_viol, out_uns, out_svc, out_load, out_req,
    use_table, posmask, ctz, svc_of, first_slot, n_slots,
):  # fmt: skip
    """One slot for every row: the compiled twin of ``SlotModel.evaluate`` (M/M/c or throttling).

    ``order``, ``onet``, ``emu``, ``tbud``: ``(S * C, A)`` per element and path position; the last six
    arguments are the routing lookup of :func:`routing_table` (passed flat: tuples dispatch slowly).
    """
    B, K = rep.shape
    S, C = rate.shape[0], users.shape[1]
    E = S * C
    rem = np.empty(E)
    ptr = np.empty(E, np.int64)
    npath = np.empty(E, np.int64)
    act = np.empty(E, np.int64)
    pos = np.empty((E, attempts), np.int64)
    take = np.empty((E, attempts))
    off = np.empty(K)
    acc = np.empty(K)
    soj = np.empty(K)
    pwk = np.empty(K)
    thk = np.empty(K)
    per_rep = np.empty(K)
    delay = np.empty((K, _GRID))
    weight = np.empty((K, _GRID))
    pattern = np.empty(S, np.int64)
    for b in range(B):
        load = out_load[b]
        _route(
            b, rep, users, rate, mu, order, mmc, attempts, rho_max, load, rem, ptr, npath, pos, take, off, acc, act,
            use_table, posmask, ctz, svc_of, first_slot, n_slots, pattern,
        )  # fmt: skip
        if mmc:
            for k in range(K):
                r = rep[b, k]
                if r <= 0:
                    continue
                theta = r * mu[k] - load[k]
                pw = _erlang_c(r, load[k] / mu[k])
                wq = pw / theta if theta > 0 else 0.0
                soj[k] = 1000.0 * (1.0 / mu[k] + wq)
                pwk[k] = pw
                thk[k] = theta
        else:
            _throttle_slots(b, rep, prev, has_prev, load, slot_seconds, cpu, ram, per_rep, soj, delay, weight)
        tot_lat, tot_viol, tot_uns, tot_req = 0.0, 0.0, 0.0, 0.0
        for s in range(S):
            svc_lat, svc_req = 0.0, 0.0
            for c in range(C):
                e = s * C + c
                u = rem[e]
                svc_req += users[b, c] * rate[s]
                if npath[e] == 0 and u == 0.0:
                    continue
                ls, vs = 0.0, 0.0
                for p in range(npath[e]):
                    a = pos[e, p]
                    k = order[e, a]
                    t = take[e, p]
                    net = onet[e, a]
                    ls += t * (net + soj[k])
                    if mmc:
                        if t > 0.0:
                            vs += t * _tail(pwk[k], thk[k], mu[k], emu[e, a], tbud[e, a])
                    else:
                        n = per_rep[k]
                        if n > 0.0:
                            over = 0.0
                            for j in range(_GRID):
                                if net + delay[k, j] > timeout:
                                    over += weight[k, j]
                            vs += t * (over / n)
                ls = ls + u * timeout
                vs = vs + u
                svc_lat += ls
                tot_lat += ls
                tot_viol += vs
                tot_uns += u
            tot_req += svc_req
            out_svc[b, s] = svc_lat / svc_req if svc_req > 0 else 0.0
        denom = max(tot_req, 1e-12)
        out_lat[b] = tot_lat / denom if tot_req > 0 else 0.0
        out_viol[b] = tot_viol / denom if tot_req > 0 else 0.0
        out_uns[b] = tot_uns / denom if tot_req > 0 else 0.0
        out_req[b] = tot_req * slot_seconds


@njit
def _throttle_slots(b, rep, prev, has_prev, load, slot_seconds, cpu, ram, per_rep, mean_delay, delay, weight):
    """Throttling counters of row ``b``: decay, rescale, burst grid; advances the state when ``has_prev``."""
    K = rep.shape[1]
    for k in range(K):
        c0 = max(cpu[b, k] - _DECAY, 0.0)
        r0 = max(ram[b, k] - _DECAY, 0.0)
        new = rep[b, k]
        if has_prev:
            old = prev[b, k]
            scale = old / new if new > 0 else 0.0  # see SlotModel._rescale
            c0 = min(c0 * scale, _CPU_CAP)
            r0 = min(r0 * scale, _RAM_CAP)
        n = load[k] * slot_seconds / new if new > 0 else 0.0
        per_rep[k] = n
        dw = 0.0
        for j in range(_GRID):
            jj = j + 1.0
            cc = min(c0 + _STEP * jj, _CPU_CAP)
            rr = min(r0 + _STEP * jj, _RAM_CAP)
            over = (cc / _CPU_CAP + rr / _RAM_CAP) / 2.0 - _THRESHOLD
            d = _MAX_MS * (0.05 + 3.0 * over) if over > 0 else 0.0
            w = max(n - (_GRID - 1), 0.0) if j == _GRID - 1 else min(max(n - (jj - 1.0), 0.0), 1.0)
            delay[k, j] = d
            weight[k, j] = w
            dw += d * w
        mean_delay[k] = dw / n if n > 0 else 0.0
        if has_prev:
            cpu[b, k] = min(c0 + _STEP * n, _CPU_CAP)
            ram[b, k] = min(r0 + _STEP * n, _RAM_CAP)


@njit
def repair_kernel(prev, action, hi, slot_node, slot_cpu, slot_ram, node_cpu, node_ram, out, rejected):
    """Compiled twin of ``Dynamics.repair``: clip, then reject the increases on over-committed nodes."""
    B, K = action.shape
    N = node_cpu.shape[0]
    cpu = np.empty(N)
    ram = np.empty(N)
    for b in range(B):
        cpu[:] = 0.0
        ram[:] = 0.0
        for k in range(K):
            r = min(max(action[b, k], 0), hi[k])
            out[b, k] = r
            cpu[slot_node[k]] += r * slot_cpu[k]
            ram[slot_node[k]] += r * slot_ram[k]
        bad = 0
        for k in range(K):
            n = slot_node[k]
            if (cpu[n] > node_cpu[n] + 1e-9 or ram[n] > node_ram[n] + 1e-9) and out[b, k] > prev[b, k]:
                out[b, k] = prev[b, k]
                bad += 1
        rejected[b] = bad


@njit
def observe_kernel(
    placement,
    users,
    slot,
    svc_lat,
    hi,
    slot_node,
    slot_cpu,
    slot_ram,
    node_cpu,
    node_ram,
    user_scale,
    timeout,
    slots_per_day,
    obs_high,
    out_obs,
    out_mask,
):
    """Compiled twin of ``Dynamics.observe``: observation vector and action mask per row."""
    B, K = placement.shape
    N = node_cpu.shape[0]
    C = users.shape[1]
    S = svc_lat.shape[1]
    cpu = np.empty(N)
    ram = np.empty(N)
    for b in range(B):
        cpu[:] = 0.0
        ram[:] = 0.0
        for k in range(K):
            cpu[slot_node[k]] += placement[b, k] * slot_cpu[k]
            ram[slot_node[k]] += placement[b, k] * slot_ram[k]
        for n in range(N):
            cpu[n] = node_cpu[n] - cpu[n]
            ram[n] = node_ram[n] - ram[n]
            out_obs[b, n] = cpu[n] / node_cpu[n]
            out_obs[b, N + n] = ram[n] / node_ram[n]
        i = 2 * N
        m = 0
        for k in range(K):
            out_obs[b, i + k] = placement[b, k] / hi[k]
            n = slot_node[k]
            room = min(cpu[n] / slot_cpu[k], ram[n] / slot_ram[k])
            top = placement[b, k] + math.floor(room + 1e-9)
            for j in range(hi[k] + 1):
                out_mask[b, m] = 1.0 if j <= top else 0.0
                m += 1
        i += K
        for c in range(C):
            out_obs[b, i + c] = min(users[b, c] / user_scale, obs_high)
        i += C
        for s in range(S):
            out_obs[b, i + s] = min(svc_lat[b, s] / timeout, 2.0)
        i += S
        phase = 2 * np.pi * slot[b] / slots_per_day
        out_obs[b, i] = math.sin(phase)
        out_obs[b, i + 1] = math.cos(phase)


@njit
def reward_kernel(placement, prev, violations, rejected, costs, out_replicas, out_changes, out_sla, out_infeasible):
    """Cost components per row; ``costs`` = (replica_cost, change_cost, sla_penalty, infeasible_penalty)."""
    B, K = placement.shape
    for b in range(B):
        total, changed = 0, 0
        for k in range(K):
            total += placement[b, k]
            changed += abs(placement[b, k] - prev[b, k])
        out_replicas[b] = costs[0] * total
        out_changes[b] = costs[1] * changed
        out_sla[b] = costs[2] * 100.0 * violations[b]
        out_infeasible[b] = costs[3] * rejected[b]


def routing_table(order: np.ndarray, slot_service: np.ndarray, n_services: int, max_bytes: int = 1 << 24) -> tuple:
    """Lookup tables of the branch-free next-host search (``_route``), or a disabled placeholder.

    Used when every service's slots are contiguous, a service has at most 8 slots and the table fits
    ``max_bytes``. ``order``: ``(S * C, A)`` slot ids by path position (padding ``K``).
    """
    E, A = order.shape
    K = len(slot_service)
    S = n_services
    counts = np.bincount(slot_service, minlength=S)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    contiguous = bool((np.diff(slot_service) >= 0).all()) if K > 1 else True
    width = int(counts.max()) if K else 0
    ok = contiguous and width <= 8 and E * (1 << width) <= max_bytes
    ctz = np.array([(m & -m).bit_length() - 1 if m else 8 for m in range(256)], dtype=np.int64)
    svc_of = np.repeat(np.arange(S, dtype=np.int64), E // S)
    if not ok:
        return (False, np.zeros((1, 1), np.uint8), ctz, svc_of, first, counts.astype(np.int64))
    valid = order < K
    local = np.where(valid, order - first[svc_of][:, None], 0).astype(np.int16)
    patterns = np.arange(1 << width, dtype=np.int16)
    posmask = np.zeros((E, 1 << width), dtype=np.uint8)
    for a in range(A):
        bit = ((patterns[None, :] >> local[:, a : a + 1]) & 1).astype(np.uint8) * valid[:, a : a + 1]
        posmask |= (bit << a).astype(np.uint8)
    return (True, posmask, ctz, svc_of, first, counts.astype(np.int64))


@njit
def move_and_count(pos, target, step_km, lo, scale, raster, arrived, counts):
    """Compiled twin of ``city.move_towards`` (in place) and the nearest-station count per cell.

    Writes the indices of the users that arrived to ``arrived`` and returns how many did.
    """
    R0, R1 = raster.shape
    counts[:] = 0
    n = 0
    for i in range(pos.shape[0]):
        dx = target[i, 0] - pos[i, 0]
        dy = target[i, 1] - pos[i, 1]
        dist = math.hypot(dx, dy)
        done = dist <= step_km[i]
        frac = 1.0 if done else step_km[i] / max(dist, 1e-12)
        x = pos[i, 0] + dx * frac
        y = pos[i, 1] + dy * frac
        pos[i, 0] = x
        pos[i, 1] = y
        if done:
            arrived[n] = i
            n += 1
        gi = min(max(int(np.rint((x - lo[0]) * scale[0])), 0), R0 - 1)
        gj = min(max(int(np.rint((y - lo[1]) * scale[1])), 0), R1 - 1)
        counts[raster[gi, gj]] += 1
    return n


@njit
def retarget(users, draw, noise, p_work, work, home, lo, hi, target):
    """New waypoints of the arrived ``users``: work anchor if ``draw < p_work`` else home, plus ``noise``, clipped."""
    for j in range(users.shape[0]):
        i = users[j]
        anchor = work[i] if draw[j] < p_work else home[i]
        for d in range(2):
            target[i, d] = min(max(anchor[d] + noise[j, d], lo[d]), hi[d])
