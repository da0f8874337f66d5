package tuning

import (
	"strings"
	"testing"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestValidateNamesTheField: each broken field is refused by name
// (negative control for TestDefaultIsValid).
func TestValidateNamesTheField(t *testing.T) {
	for field, breakIt := range map[string]func(*Tuning){
		"ChunkSize":       func(t *Tuning) { t.ChunkSize = 100 },
		"MaxWindow":       func(t *Tuning) { t.MaxWindow = t.FirstWindow - 1 },
		"CheckpointEvery": func(t *Tuning) { t.CheckpointEvery = 0 },
		"Workers":         func(t *Tuning) { t.Workers = 0 },
		"WarmTTL":         func(t *Tuning) { t.WarmTTL = 0 },
		"WarmEvictAfter":  func(t *Tuning) { t.WarmEvictAfter = -1 },
		"OriginStreams":   func(t *Tuning) { t.OriginStreams = -1 },
		"LaneSlice":       func(t *Tuning) { t.LaneSlice = 17 },
		"LaneGateWait":    func(t *Tuning) { t.LaneGateWait = -1 },
		"SpeculationHold": func(t *Tuning) { t.SpeculationHold = 0 },
		"BufferMemory":    func(t *Tuning) { t.BufferMemory = t.WarmBudget },
		"MemoryLimit":     func(t *Tuning) { t.MemoryLimit = t.BufferMemory },
		"StartupWait":     func(t *Tuning) { t.StartupWait = -1 },
		"ListingTTL":      func(t *Tuning) { t.ListingTTL = -1 },
		"PlanReadsAtOnce": func(t *Tuning) { t.PlanReadsAtOnce = -1 },
	} {
		tu := Default()
		breakIt(&tu)
		err := tu.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("broken %s: Validate() = %v, want an error naming it", field, err)
		}
	}
}

func TestOrDefault(t *testing.T) {
	if got := OrDefault(Tuning{}); got.ChunkSize != Default().ChunkSize {
		t.Fatalf("OrDefault(zero) kept the zero value")
	}
	custom := Default()
	custom.Workers = 7
	if got := OrDefault(custom); got.Workers != 7 {
		t.Fatalf("OrDefault replaced a set tuning")
	}
}

// TestHeapLimit: the heap gets what the chunk buffers leave of
// MemoryLimit, so that the two together stay within it.
func TestHeapLimit(t *testing.T) {
	tu := Default()
	if got, want := tu.HeapLimit(), tu.MemoryLimit-tu.BufferMemory; got != want || got <= 0 {
		t.Fatalf("HeapLimit() = %d, want MemoryLimit - BufferMemory = %d", got, want)
	}
	tu.MemoryLimit = 0
	if got := tu.HeapLimit(); got != 0 {
		t.Fatalf("HeapLimit() with no MemoryLimit = %d, want 0 (none)", got)
	}
}
