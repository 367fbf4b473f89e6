package locator

// Cold and warm moves (draft-ietf-nvo3-vmm-03/-05 section 4.2.1): while a
// task that lives here is suspended, its address is not used. The store
// keeps the task's mapping at this NVE with state suspended; every NVE
// removes the mapping from its table (desired), and this one also stops
// delivering to the task's port: its local entry is marked suspended, so
// the datapath answers packets still arriving for it with an ICMPv6
// address unreachable (rate limited) instead of delivering them. The port
// stays bound: if the move is rolled back (the suspension times out) the
// mark goes and delivery resumes; if the task registers elsewhere, the
// entry becomes an in-flight redirect as after a hot move.

// setSuspended marks or unmarks lt's local entry. a.mu is held.
func (a *Agent) setSuspended(lt *localTask, on bool) {
	if lt.suspended == on {
		return
	}
	l := Local{SIR: lt.key.sir, Identifier: lt.key.id, Ifindex: lt.port.Ifindex, MAC: lt.spec.MAC, Suspended: on}
	if err := a.cfg.Datapath.UpsertLocal(l); err != nil {
		a.dpErr("mark local suspended", err, "sir", lt.spec.SIR, "suspended", on)
		return
	}
	lt.suspended = on
	if on {
		a.st.Suspended++
		a.log.Info("task suspended by a move: local delivery stopped", "task", lt.spec.Name, "sir", lt.spec.SIR)
	} else {
		a.log.Info("task resumed: local delivery restored", "task", lt.spec.Name, "sir", lt.spec.SIR)
	}
}
