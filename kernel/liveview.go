package kernel

import (
	"crypto/tls"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel/status"
)

// The live view: what a running process serves and calls, read by the admin
// endpoint, metrics and tests. Nothing is registered globally: the runtime
// asks its generations, their listeners ask their ServerConns (through
// ConnReporter), a client asks its sessions, and plugins publish state
// through Publisher. Every count is kept per connection or per plugin with
// atomics, so reading the view takes no lock that a call also takes.

// Snapshot is a point-in-time view of a runtime (see Runtime.Snapshot).
type Snapshot struct {
	// Generations holds the live generation first, then every generation
	// still draining, newest first.
	Generations []GenerationView `json:"generations"`
	// Clients are the clients that follow the runtime's configuration
	// (see Runtime.Follow) and can be viewed (see ClientViewer).
	Clients []ClientView `json:"clients,omitempty"`
	// Connections counts the server connections against their caps.
	Connections ConnectionsView `json:"connections"`
}

// GenerationState is where a generation is in its lifecycle.
type GenerationState string

// The states a snapshot shows. A generation is building or starting only
// inside Apply, so a snapshot sees live and draining ones.
const (
	// GenerationLive serves new connections and calls.
	GenerationLive GenerationState = "live"
	// GenerationDraining was replaced: its moved listeners' connections
	// are going away, and calls that started on it are finishing; its
	// plugins are cleaned up when the last one ends.
	GenerationDraining GenerationState = "draining"
)

// GenerationView is one generation in a Snapshot.
type GenerationView struct {
	ID    uint64          `json:"id"`
	State GenerationState `json:"state"`
	// CallsInFlight counts the calls dispatched to this generation's
	// interceptor chains that have not ended.
	CallsInFlight int            `json:"calls_in_flight"`
	Listeners     []ListenerView `json:"listeners"`
	Plugins       []PluginView   `json:"plugins,omitempty"`
}

// ListenerView is one listener and the connections it accepted that are
// still open.
type ListenerView struct {
	Transport string `json:"transport"`
	// Address is the endpoint address, such as "tcp://127.0.0.1:7443".
	Address   string     `json:"address"`
	Protocols []string   `json:"protocols"`
	Conns     []ConnView `json:"conns"`
}

// ConnView is one connection, server or client side.
type ConnView struct {
	// Protocol names the protocol on the connection: "axon", "grpc" or
	// "grpc-web".
	Protocol string `json:"protocol"`
	// Transport names the transport plugin, such as "tcp" or "quic".
	Transport string `json:"transport"`
	// Endpoint is, on a client, the endpoint address the session is
	// connected to; empty on a server.
	Endpoint string `json:"endpoint,omitempty"`
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	// TLSVersion ("TLS 1.3") and PeerIdentity (the verified peer's
	// identity) are empty on a connection without TLS.
	TLSVersion   string    `json:"tls_version,omitempty"`
	PeerIdentity string    `json:"peer_identity,omitempty"`
	OpenedAt     time.Time `json:"opened_at"`
	InFlight     int       `json:"in_flight"`
	// Finished counts the calls that ended, by status code; codes with no
	// call are absent.
	Finished     map[status.Code]uint64 `json:"finished,omitempty"`
	BytesIn      uint64                 `json:"bytes_in"`
	BytesOut     uint64                 `json:"bytes_out"`
	LastActivity time.Time              `json:"last_activity"`
}

// PluginView is one plugin instance and the state it publishes.
type PluginView struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
	// Key is the config key that selected it, such as
	// "client.interceptors[1]".
	Key string `json:"key"`
	// State is what the instance's State method returned (see
	// Publisher); nil when it publishes nothing.
	State any `json:"state,omitempty"`
}

// ClientView is one client: its target, its sessions and its plugins.
type ClientView struct {
	Target   string       `json:"target"`
	Sessions []ConnView   `json:"sessions"`
	Plugins  []PluginView `json:"plugins,omitempty"`
}

// ConnReporter is implemented by a ServerConn that can list its open
// connections. The sniffer that shares a listener between protocols
// implements it by asking each protocol. Conns is called concurrently with
// everything else and must not block on a call.
type ConnReporter interface {
	// Conns returns a view of each open connection. Transport may be left
	// empty: the runtime fills it in from the listener.
	Conns() []ConnView
}

// Publisher is implemented by a plugin instance (or an Interceptor's
// Instance) that publishes state for the live view, such as a breaker's
// per-endpoint states. State is called concurrently with calls; what it
// returns must be safe to encode as JSON and must not be modified later.
type Publisher interface {
	State() any
}

// ClientViewer is implemented by a Follower that can be viewed: the runtime
// includes it in Snapshot.Clients.
type ClientViewer interface {
	View() ClientView
}

// ConnStats counts one connection's calls and bytes for its ConnView. A
// protocol keeps one per connection; its methods are atomic, so calls on
// the connection update it without a lock, and a snapshot reads it while
// they do. The zero value is ready to use once Open has been called.
type ConnStats struct {
	opened   int64 // unix ns
	last     atomic.Int64
	inFlight atomic.Int64
	in, out  atomic.Uint64
	finished [status.Unauthenticated + 1]atomic.Uint64
	other    atomic.Uint64 // calls ended with a code outside gRPC's range
}

// Open records when the connection opened.
func (s *ConnStats) Open(now time.Time) {
	s.opened = now.UnixNano()
	s.last.Store(s.opened)
}

// Begin records that a call started.
func (s *ConnStats) Begin() { s.inFlight.Add(1) }

// End records that a call that Begin counted ended with code.
func (s *ConnStats) End(code status.Code) {
	s.inFlight.Add(-1)
	s.Finish(code)
}

// Finish records a call that ended with code without being counted by
// Begin, such as one refused before it started.
func (s *ConnStats) Finish(code status.Code) {
	if int(code) < len(s.finished) {
		s.finished[code].Add(1)
	} else {
		s.other.Add(1)
	}
}

// Read records n bytes received, and activity now.
func (s *ConnStats) Read(n int, now time.Time) {
	s.in.Add(uint64(n))
	s.last.Store(now.UnixNano())
}

// Wrote records n bytes sent, and activity now.
func (s *ConnStats) Wrote(n int, now time.Time) {
	s.out.Add(uint64(n))
	s.last.Store(now.UnixNano())
}

// View fills the counted fields of v (opened at, in flight, finished,
// bytes, last activity) and returns it.
func (s *ConnStats) View(v ConnView) ConnView {
	v.OpenedAt = time.Unix(0, s.opened)
	v.LastActivity = time.Unix(0, s.last.Load())
	v.InFlight = int(s.inFlight.Load())
	v.BytesIn, v.BytesOut = s.in.Load(), s.out.Load()
	for c := range s.finished {
		if n := s.finished[c].Load(); n > 0 {
			if v.Finished == nil {
				v.Finished = make(map[status.Code]uint64)
			}
			v.Finished[status.Code(c)] = n
		}
	}
	if n := s.other.Load(); n > 0 {
		if v.Finished == nil {
			v.Finished = make(map[status.Code]uint64)
		}
		v.Finished[status.Unknown] += n
	}
	return v
}

// Snapshot returns the live view of the runtime: the live generation, the
// generations still draining, their listeners, connections and plugins, and
// the clients that follow the runtime. It takes no lock that a call takes;
// counts read while calls run are each exact but not mutually consistent.
func (r *Runtime) Snapshot() Snapshot {
	s := Snapshot{Connections: r.gate.view()}
	if g := r.cur.Load(); g != nil {
		s.Generations = append(s.Generations, g.view(GenerationLive))
	}
	r.viewMu.Lock()
	draining := slices.Clone(r.draining)
	r.viewMu.Unlock()
	for i := len(draining) - 1; i >= 0; i-- {
		s.Generations = append(s.Generations, draining[i].view(GenerationDraining))
	}
	r.mu.Lock()
	followers := slices.Clone(r.followers)
	r.mu.Unlock()
	for _, f := range followers {
		if v, ok := f.(ClientViewer); ok {
			s.Clients = append(s.Clients, v.View())
		}
	}
	return s
}

// view returns the live view of g in state st. A listener that a newer
// generation carries is shown under the newest one only.
func (g *generation) view(st GenerationState) GenerationView {
	v := GenerationView{ID: g.id, State: st, CallsInFlight: int(g.table.calls.Load()), Plugins: g.insts.plugins()}
	for _, l := range g.listeners {
		if st == GenerationDraining && l.disp.t.Load() != g.table {
			continue // carried on: the newer generation shows it
		}
		lv := ListenerView{Transport: l.cfg.Transport, Address: l.endpoint.Address, Protocols: l.cfg.Protocols}
		if cr, ok := l.server.(ConnReporter); ok {
			for _, c := range cr.Conns() {
				if c.Transport == "" {
					c.Transport = l.cfg.Transport
				}
				lv.Conns = append(lv.Conns, c)
			}
		}
		v.Listeners = append(v.Listeners, lv)
		v.Plugins = append(v.Plugins, l.insts.plugins()...)
	}
	return v
}

// Conns implements ConnReporter: the connections of every protocol on the
// listener.
func (s *sniffer) Conns() []ConnView {
	var out []ConnView
	for _, srv := range s.servers {
		if cr, ok := srv.(ConnReporter); ok {
			out = append(out, cr.Conns()...)
		}
	}
	return out
}

// TLSConn is a connection that reports its TLS state: a *tls.Conn, or a
// QUIC transport's connection.
type TLSConn interface {
	ConnectionState() tls.ConnectionState
}

// TLSOf returns the connection that holds conn's TLS state: conn itself, or
// one it wraps (NetConn, as the sniffer's connections do); nil when there
// is none.
func TLSOf(conn net.Conn) TLSConn {
	for range 8 {
		if s, ok := conn.(TLSConn); ok {
			return s
		}
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		conn = u.NetConn()
	}
	return nil
}

// TLSInfo is what the live view shows of a connection's TLS.
type TLSInfo struct {
	Version string // such as "TLS 1.3"
	// Peer is the verified peer certificate's first URI SAN (a SPIFFE
	// ID), else its first DNS SAN; empty without a verified certificate.
	Peer string
}

// NewTLSInfo returns the view of cs, or nil if its handshake is not
// complete.
func NewTLSInfo(cs *tls.ConnectionState) *TLSInfo {
	if !cs.HandshakeComplete {
		return nil
	}
	return &TLSInfo{Version: tls.VersionName(cs.Version), Peer: VerifiedIdentity(cs)}
}

// VerifiedIdentity returns the identity of the peer certificate cs
// verified (see Identity), or "" when it verified none.
func VerifiedIdentity(cs *tls.ConnectionState) string {
	if len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 {
		return Identity(cs.VerifiedChains[0][0])
	}
	return ""
}

// AddrString returns a.String(), or "" for a nil address.
func AddrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
