package main

import (
	"hash/maphash"
	"sync"
)

const (
	seenFirstBits = 1 << 24 // 2 MiB
	seenHashes    = 7
	// About 1% false positives at 7 hashes and 10 bits an id; a false positive only sends an order to Python.
	seenBitsPerID = 10
)

// seenFilter remembers every bot client order id the lane has seen, for months, in little memory: a chain of Bloom
// filters, each twice the last, a new one begun when the newest is full. It has no false negatives, which is what
// keeps an id from being sent twice.
type seenFilter struct {
	mu      sync.Mutex
	seed1   maphash.Seed
	seed2   maphash.Seed
	filters []*bloom
}

type bloom struct {
	words    []uint64
	bits     uint64
	count    int
	capacity int
}

func newBloom(bits uint64) *bloom {
	return &bloom{words: make([]uint64, bits/64), bits: bits, capacity: int(bits / seenBitsPerID)}
}

func newSeenFilter() *seenFilter {
	return &seenFilter{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(),
		filters: []*bloom{newBloom(seenFirstBits)}}
}

func (b *bloom) has(h1, h2 uint64) bool {
	for i := uint64(0); i < seenHashes; i++ {
		bit := (h1 + i*h2) % b.bits
		if b.words[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

func (b *bloom) add(h1, h2 uint64) {
	for i := uint64(0); i < seenHashes; i++ {
		bit := (h1 + i*h2) % b.bits
		b.words[bit/64] |= 1 << (bit % 64)
	}
	b.count++
}

// testAndAdd reports whether id was (possibly) seen before, and records it.
func (s *seenFilter) testAndAdd(id string) bool {
	h1 := maphash.String(s.seed1, id)
	h2 := maphash.String(s.seed2, id) | 1
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.filters {
		if f.has(h1, h2) {
			return true
		}
	}
	last := s.filters[len(s.filters)-1]
	if last.count >= last.capacity {
		last = newBloom(last.bits * 2)
		s.filters = append(s.filters, last)
	}
	last.add(h1, h2)
	return false
}
