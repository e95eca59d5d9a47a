package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Ids recorded per request at most: a request naming newClientOrderId more than once is refused by the gateway
	// (-1101) and makes no order, so a flood of them could only grow the seen filter.
	maxIDsPerRequest = 8
	barrierWait      = 30 * time.Second
	busyBody         = `{"code":-1000,"msg":"KEYGUARD_BUSY: the gateway has no room for another connection; reuse a kept-alive one"}`
)

// ServeHTTP: a new order may take the fast path; everything else, and every order that does not fit a verdict
// exactly, goes to Python unchanged.
func (l *Lane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := l.readBody(w, r)
	if !ok {
		return
	}
	if r.Method == http.MethodPost {
		// Every id of every order the lane sees is recorded before the order goes anywhere (rule 6), and held
		// while this request is handled: the same id sent at once on another connection waits for it.
		fresh, named := l.noteClientIDs(r.URL.RawQuery, body)
		l.hold(fresh)
		if r.URL.Path == "/api/v3/order" && r.URL.RawPath == "" && l.fast(w, r, body, fresh) {
			l.release(fresh)
			return
		}
		l.release(fresh)
		if !l.await(r.Context(), l.inProgressOf(named)) {
			writeError(w, http.StatusServiceUnavailable, -1007, "KEYGUARD_LANE_PENDING: an order with this id "+
				"sent through the fast lane is not booked yet; retry shortly")
			return
		}
	}
	if signedRequest(r) {
		if !l.barrier(r.Context()) {
			writeError(w, http.StatusServiceUnavailable, -1007, "KEYGUARD_LANE_PENDING: an order sent through "+
				"the fast lane is not booked yet; retry shortly")
			return
		}
	}
	if len(body) == 0 {
		r.Body = http.NoBody
	} else {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	l.forward.ServeHTTP(w, r)
}

// signedRequest: the request names a bot's key. Also under a spelling a server might fold into that name
// ("X_MBX_APIKEY"): waiting for nothing costs little, a request reaching Python early could cost an order.
func signedRequest(r *http.Request) bool {
	if _, ok := r.Header["X-Mbx-Apikey"]; ok {
		return true
	}
	for name := range r.Header {
		if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "x-mbx-apikey") {
			return true
		}
	}
	return false
}

// readBody reads the whole body within the request's time and size bounds (413 past the size).
func (l *Lane) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := l.hello.Server.MaxBodyBytes
	if r.ContentLength > limit {
		writeTooLarge(w)
		return nil, false
	}
	if r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
		return nil, true
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(seconds(l.hello.Server.RequestTimeoutS)))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	// Cleared, so the deadline cannot cut the connection while the request waits on the barrier or on Python.
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeTooLarge(w)
		} else {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, -1000, "The request did not arrive in time.")
		}
		return nil, false
	}
	return body, true
}

func writeTooLarge(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge, -1000, "Request body too large.")
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	body := `{"code":` + strconv.Itoa(code) + `,"msg":` + strconv.Quote(msg) + `}`
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// noteClientIDs adds every newClientOrderId of a POST to the seen filter; it returns those that were new. It reads
// leniently (any spelling of the name, escaped or not, query and body): recording too much only costs a fast path.
func (l *Lane) noteClientIDs(query string, body []byte) (map[string]bool, []string) {
	var fresh map[string]bool
	var named []string
	exact := false // the first parameter named exactly newClientOrderId: the one the gateway reads, never capped
	note := func(raw string) {
		for _, part := range strings.Split(raw, "&") {
			name, value, _ := strings.Cut(part, "=")
			if unescaped, err := queryUnescape(name); err == nil {
				name = unescaped
			}
			if !strings.EqualFold(name, "newClientOrderId") {
				continue
			}
			read := !exact && name == "newClientOrderId"
			exact = exact || read
			ids := []string{value}
			if unescaped, err := queryUnescape(value); err == nil && unescaped != value {
				ids = append(ids, unescaped)
			}
			for _, id := range ids {
				if !read && len(named) >= maxIDsPerRequest {
					break
				}
				named = append(named, id)
				if !l.seen.testAndAdd(id) {
					if fresh == nil {
						fresh = map[string]bool{}
					}
					fresh[id] = true
				}
			}
		}
	}
	note(query)
	if len(body) > 0 {
		note(string(body))
	}
	return fresh, named
}

// barrier holds a forwarded signed request until the orders pending when it arrived are booked (adopted or
// resolved), so a bot never asks Python about an order Python has not booked. False: give up (30 s, or the lane is
// stopping and they never will be).
func (l *Lane) barrier(ctx context.Context) bool {
	return l.await(ctx, l.pendingNow())
}

// await waits for each channel to close: false on giving up (30 s, the lane stopping, the bot gone).
func (l *Lane) await(ctx context.Context, waits []chan struct{}) bool {
	if len(waits) == 0 {
		return true
	}
	timer := time.NewTimer(barrierWait)
	defer timer.Stop()
	for _, done := range waits {
		select {
		case <-done:
		case <-timer.C:
			return false
		case <-l.closed:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// newForwarder sends requests to Python's Unix socket as they came (method, path, raw query, headers, Host, body)
// and Python's answers back as they are, over kept-alive connections.
func newForwarder(socket string, logger *log.Logger) http.Handler {
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // no Accept-Encoding of our own, no transparent gunzip
		ForceAttemptHTTP2:   false,
	}
	var lastLog atomic.Int64
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "keyguard-gateway" // the connection's key only: Host stays the bot's
			// Rewrite drops these and any unparsable query parameter; the request goes on as it came.
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			for _, name := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if values, ok := pr.In.Header[name]; ok {
					pr.Out.Header[name] = values
				}
			}
		},
		Transport:     transport,
		FlushInterval: -1,
		ErrorLog:      logger,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the bot went away
			}
			// One line a minute at most; the error is the dial's or the connection's (no URL, so no signature).
			if now := time.Now().Unix(); now-lastLog.Load() >= 60 {
				lastLog.Store(now)
				logger.Printf("the Python gateway is not answering: %v", err)
			}
			writeError(w, http.StatusServiceUnavailable, -1000, "KEYGUARD_INTERNAL: the gateway is not answering")
		},
	}
}

// limitListener holds at most max connections open; past it a connection gets a 503 in Binance's shape and is
// closed.
type limitListener struct {
	net.Listener
	max  int64
	open atomic.Int64
}

func newLimitListener(inner net.Listener, limit int) *limitListener {
	return &limitListener{Listener: inner, max: int64(limit)}
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ll.open.Add(1) > ll.max {
			ll.open.Add(-1)
			go refuseBusy(conn)
			continue
		}
		return &countedConn{Conn: conn, ll: ll}, nil
	}
}

type countedConn struct {
	net.Conn
	ll   *limitListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.ll.open.Add(-1) })
	return c.Conn.Close()
}

// refuseBusy answers after reading the request's head, and drains a little before closing, so the bot reads the
// 503 rather than a reset.
func refuseBusy(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	br := bufio.NewReader(conn)
	if req, err := http.ReadRequest(br); err == nil {
		io.Copy(io.Discard, io.LimitReader(req.Body, 64<<10))
	}
	io.WriteString(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"+
		"Connection: close\r\nContent-Length: "+strconv.Itoa(len(busyBody))+"\r\n\r\n"+busyBody)
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
	}
}
