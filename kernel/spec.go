package kernel

import (
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// StreamType is the shape of a call.
type StreamType uint8

// The shapes of a call.
const (
	StreamTypeUnary  StreamType = iota
	StreamTypeClient            // the client sends many messages, the server one
	StreamTypeServer            // the client sends one message, the server many
	StreamTypeBidi              // both send many
	// StreamTypeUnknown is a streaming call whose shape the client was not
	// told (it was opened with NewStream directly, not through a
	// generated client).
	StreamTypeUnknown
)

func (t StreamType) String() string {
	switch t {
	case StreamTypeUnary:
		return "unary"
	case StreamTypeClient:
		return "client_stream"
	case StreamTypeServer:
		return "server_stream"
	case StreamTypeBidi:
		return "bidi_stream"
	}
	return "stream"
}

// Spec describes a call to interceptors, guards and balancers: which method,
// its shape, and whether it is safe to send again. A Spec is computed once
// per method (and idempotency) and shared by every call to it: it must not
// be modified. The peer of a server call is in ServerCall.Peer; a client
// call's endpoint is known only once it is picked (Guard.Admit sees it).
type Spec struct {
	// FullMethod is "/pkg.Service/Method".
	FullMethod string
	// Service is "pkg.Service" and Method is "Method"; both are empty when
	// FullMethod is not of that form.
	Service, Method string
	StreamType      StreamType
	// Idempotent says the call is safe to send again after it may have
	// run: the method's idempotency_level is IDEMPOTENT or
	// NO_SIDE_EFFECTS, or the client passed the Idempotent option.
	Idempotent bool
}

// NewSpec returns the Spec of a call to fullMethod.
func NewSpec(fullMethod string, st StreamType, idempotent bool) *Spec {
	s := &Spec{FullMethod: fullMethod, StreamType: st, Idempotent: idempotent}
	if name, ok := strings.CutPrefix(fullMethod, "/"); ok {
		if i := strings.LastIndexByte(name, '/'); i > 0 {
			s.Service, s.Method = name[:i], name[i+1:]
		}
	}
	return s
}

// specOf returns the Spec of m.
func specOf(m *MethodDesc) *Spec {
	st := StreamTypeUnary
	switch {
	case m.ClientStreams && m.ServerStreams:
		st = StreamTypeBidi
	case m.ClientStreams:
		st = StreamTypeClient
	case m.ServerStreams:
		st = StreamTypeServer
	}
	return NewSpec(m.FullName, st, m.Idempotent)
}

// specCache hands out one Spec per method, shape and idempotency, so that a
// client computes a method's Spec once rather than once per call. It is
// safe for concurrent use and takes no lock on a hit. Generated clients pass
// method names that are constants, so a small table indexed by the address
// of the name's bytes answers most calls without hashing the name; the
// others look in an immutable map.
type specCache struct {
	recent [64]atomic.Pointer[recentSpecs]
	m      atomic.Pointer[map[string]*methodSpecs]
	mu     sync.Mutex // serialises misses of the map
}

// recentSpecs remembers the Specs of a method name at one address.
type recentSpecs struct {
	name  string
	specs *methodSpecs
}

// methodSpecs are the Specs of one method, by shape and idempotency.
type methodSpecs [StreamTypeUnknown + 1][2]*Spec

// maxCachedSpecs bounds the methods a specCache keeps; calls to further
// methods compute their Spec each time.
const maxCachedSpecs = 4096

func (c *specCache) get(method string, st StreamType, idempotent bool) *Spec {
	idem := 0
	if idempotent {
		idem = 1
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(method)))
	slot := &c.recent[(p>>4^p>>10)%uintptr(len(c.recent))]
	if r := slot.Load(); r != nil && unsafe.StringData(r.name) == unsafe.StringData(method) && len(r.name) == len(method) {
		return r.specs[st][idem]
	}
	ms := c.lookup(method)
	if ms == nil {
		return NewSpec(method, st, idempotent)
	}
	if slot.Load() == nil {
		// First come keeps the slot: a name built afresh for each call
		// must not allocate each time.
		slot.CompareAndSwap(nil, &recentSpecs{name: method, specs: ms})
	}
	return ms[st][idem]
}

// lookup returns the Specs of method from the map, adding them when the map
// is not full; nil when it is.
func (c *specCache) lookup(method string) *methodSpecs {
	if m := c.m.Load(); m != nil {
		if ms := (*m)[method]; ms != nil {
			return ms
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if ms := (*old)[method]; ms != nil {
			return ms
		}
		if len(*old) >= maxCachedSpecs {
			return nil
		}
	}
	ms := new(methodSpecs)
	for t := range ms {
		ms[t] = [2]*Spec{NewSpec(method, StreamType(t), false), NewSpec(method, StreamType(t), true)}
	}
	m := make(map[string]*methodSpecs, 1)
	if old != nil {
		m = make(map[string]*methodSpecs, len(*old)+1)
		for k, v := range *old {
			m[k] = v
		}
	}
	m[method] = ms
	c.m.Store(&m)
	return ms
}
