// Package owner records which process made a shared kernel object — a
// named network namespace, a bpffs mount, a lab — so that what a run left
// behind when it died (a benchmark killed by a timeout, an interrupted
// `ilalab down`) can be told from what a live run still uses, and removed.
//
// A record is a small JSON file in a directory [DefaultDir,
// /run/ilamesh/owners], one per object, named after its kind and name:
//
//	/run/ilamesh/owners/netns.ilafab-1a2b3c
//	{"kind":"netns","name":"ilafab-1a2b3c","pid":4242,"start":1234567}
//
// pid is the creating process and start its start time (clock ticks after
// boot, field 22 of /proc/PID/stat): a pid the kernel has since given to
// another process does not pass for the creator. The creator writes the
// record before it creates the object (Claim), so there is never an object
// of ours without one, and removes it after removing the object (Release).
// The creator is alive while a process with that pid and start time runs
// and is not a zombie.
//
// Sweep removes the namespaces and bpffs mounts whose creator is gone;
// labs (kind "lab") outlive the process that built them and are judged
// and removed by the lab itself (`ilalab down --all`). Objects without a
// record — made by older builds or by anything else — are never touched.
package owner
