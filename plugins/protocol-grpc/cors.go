package grpc

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// corsRequestHeaders are the request headers gRPC-Web clients send, allowed
// for every allowed origin.
var corsRequestHeaders = []string{
	"Content-Type", "X-Grpc-Web", "X-User-Agent", "Grpc-Timeout", "Grpc-Encoding", "Grpc-Accept-Encoding",
}

// corsExposed are the response headers every allowed page may read: the
// status of a trailers-only response travels in them.
var corsExposed = []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin", "Grpc-Encoding", "Grpc-Accept-Encoding"}

// allows reports whether a page from origin may call the server.
func (c *CORSConfig) allows(origin string) bool {
	for _, o := range c.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// annotate adds the headers that let an allowed page read a response.
func (c *CORSConfig) annotate(h http.Header, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", strings.Join(append(append([]string(nil), corsExposed...), c.ExposedHeaders...), ", "))
}

// preflight answers a browser's preflight request from an allowed origin:
// 204 if the page may POST with the headers it names, 403 otherwise.
func (c *CORSConfig) preflight(w http.ResponseWriter, r *http.Request, origin string) {
	if m := r.Header.Get("Access-Control-Request-Method"); m != http.MethodPost {
		http.Error(w, "protocol.grpc: cross-origin method "+m+" is not allowed; gRPC-Web calls are POST requests", http.StatusForbidden)
		return
	}
	var asked []string
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name == "" {
				continue
			}
			canon := http.CanonicalHeaderKey(name)
			if !slices.Contains(corsRequestHeaders, canon) && !slices.Contains(c.AllowedHeaders, canon) {
				http.Error(w, "protocol.grpc: cross-origin request header "+name+" is not allowed (cors.allowed_headers)", http.StatusForbidden)
				return
			}
			asked = append(asked, name)
		}
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Allow-Methods", http.MethodPost)
	if len(asked) > 0 {
		h.Set("Access-Control-Allow-Headers", strings.Join(asked, ", "))
	}
	if c.MaxAge > 0 {
		h.Set("Access-Control-Max-Age", strconv.Itoa(int(c.MaxAge.Seconds())))
	}
	w.WriteHeader(http.StatusNoContent)
}
