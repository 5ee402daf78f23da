package pbx

import "runtime/metrics"

// Process is what the PBX's process holds in memory, in `twinpbx status`:
// enough to tell a leak (goroutines or heap objects that keep growing)
// from memory the Go runtime keeps for reuse after a burst (free heap not
// yet returned to the system).
type Process struct {
	Goroutines uint64 `json:"goroutines"`
	// HeapLive is the memory of the objects the last GC found alive: the
	// figure a leak makes grow.
	HeapLive uint64 `json:"heap_live_bytes"`
	// HeapObjects is the memory of live and not yet swept objects.
	HeapObjects uint64 `json:"heap_objects_bytes"`
	// HeapFree is heap memory free for reuse but still held from the
	// system; HeapReleased was given back.
	HeapFree     uint64 `json:"heap_free_bytes"`
	HeapReleased uint64 `json:"heap_released_bytes"`
	GCCycles     uint64 `json:"gc_cycles"`
}

var processMetrics = []string{
	"/sched/goroutines:goroutines",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
	"/gc/cycles/total:gc-cycles",
}

// readProcess samples the runtime's metrics.
func readProcess() Process {
	s := make([]metrics.Sample, len(processMetrics))
	for i, name := range processMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0 // not offered by this runtime
		}
		return s[i].Value.Uint64()
	}
	return Process{Goroutines: v(0), HeapLive: v(1), HeapObjects: v(2), HeapFree: v(3), HeapReleased: v(4), GCCycles: v(5)}
}
