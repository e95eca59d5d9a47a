package main

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	maxIdleExchange = 8
	maxAnswerBytes  = 8 << 20
)

type exchangeKey struct {
	apiKey string
	secret []byte
	// usable is false for a key that cannot go in a header as is: orders then go through Python.
	usable bool
}

// exchange sends orders on raw kept-alive connections, each order's write and read on its request's goroutine
// (net/http's Transport hands a request between goroutines: measured slower).
type exchange struct {
	addr       string // host:port to dial
	hostHeader string
	prefix     string // the base URL's path, kept before /api/v3/order
	tlsConfig  *tls.Config
	dialer     net.Dialer
	timeout    time.Duration
	recvWindow int64
	key        atomic.Pointer[exchangeKey]

	mu   sync.Mutex
	idle []*exConn
}

type exConn struct {
	conn net.Conn // what the order is written on: raw, or TLS over it
	raw  net.Conn // the TCP connection
	br   *bufio.Reader
}

type exAnswer struct {
	status int
	header http.Header
	body   []byte
}

func newExchange(cfg *exchangeConfig, roots *x509.CertPool) (*exchange, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("base_url must be scheme://host[:port][/path]")
	}
	if cfg.RecvWindowMs <= 0 || cfg.RecvWindowMs > 60000 {
		return nil, errors.New("recv_window_ms must be in 1..60000")
	}
	if cfg.TimeoutMs <= 0 {
		return nil, errors.New("timeout_ms must be above 0")
	}
	e := &exchange{
		hostHeader: u.Host,
		prefix:     strings.TrimRight(u.EscapedPath(), "/"),
		timeout:    time.Duration(cfg.TimeoutMs * float64(time.Millisecond)),
		recvWindow: cfg.RecvWindowMs,
		dialer:     net.Dialer{KeepAlive: 30 * time.Second},
	}
	port := u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		if port == "" {
			port = "443"
		}
		e.tlsConfig = &tls.Config{ServerName: u.Hostname(), RootCAs: roots, MinVersion: tls.VersionTLS12}
	default:
		return nil, fmt.Errorf("base_url scheme %q is not http or https", u.Scheme)
	}
	e.addr = net.JoinHostPort(u.Hostname(), port)
	if cfg.SourceAddress != nil && *cfg.SourceAddress != "" {
		ip := net.ParseIP(*cfg.SourceAddress)
		if ip == nil {
			return nil, fmt.Errorf("source_address %q is not an IP address", *cfg.SourceAddress)
		}
		e.dialer.LocalAddr = &net.TCPAddr{IP: ip}
	}
	e.setKey(cfg.APIKey, cfg.Secret)
	return e, nil
}

// setKey swaps the key for orders signed from now on; one already signed keeps its own.
func (e *exchange) setKey(apiKey, secret string) {
	usable := apiKey != "" && secret != "" && !strings.ContainsFunc(apiKey, func(r rune) bool {
		return r <= ' ' || r >= 0x7f
	})
	e.key.Store(&exchangeKey{apiKey: apiKey, secret: []byte(secret), usable: usable})
}

func sign(secret []byte, payload string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(payload))
	return hex.EncodeToString(mac.Sum(nil))
}

// warm opens one connection ahead of the first order.
func (e *exchange) warm() {
	c, err := e.dial(time.Now().Add(e.timeout))
	if err == nil {
		e.put(c)
	}
}

func (e *exchange) dial(deadline time.Time) (*exConn, error) {
	d := e.dialer
	d.Deadline = deadline
	conn, err := d.Dial("tcp", e.addr)
	if err != nil {
		return nil, err
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.SetNoDelay(true)
	}
	raw := conn
	if e.tlsConfig != nil {
		tc := tls.Client(conn, e.tlsConfig)
		tc.SetDeadline(deadline)
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, err
		}
		tc.SetDeadline(time.Time{})
		conn = tc
	}
	return &exConn{conn: conn, raw: raw, br: bufio.NewReaderSize(conn, 16<<10)}, nil
}

// take returns an idle connection that is still open, else a new one. Nothing of the order is written before the
// check, so dropping a connection here is always safe.
func (e *exchange) take(deadline time.Time) (*exConn, error) {
	for {
		e.mu.Lock()
		n := len(e.idle)
		if n == 0 {
			e.mu.Unlock()
			break
		}
		c := e.idle[n-1]
		e.idle = e.idle[:n-1]
		e.mu.Unlock()
		if c.alive() {
			return c, nil
		}
		c.conn.Close()
	}
	return e.dial(deadline)
}

// alive checks an idle connection without waiting. A Read with a deadline already passed would not do: Go fails it
// before reading, so it reports a closed connection alive. Instead the socket is peeked without blocking: nothing
// there (EAGAIN) is alive; end of stream or an error is dead; bytes on a plain connection are an answer nobody asked
// for (dead). On TLS, bytes are usually a session ticket the server sent after the handshake: a read of at most a
// millisecond consumes it (a timeout then means alive) or finds the server's close (dead).
func (c *exConn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	var n int
	var peekErr error
	if err := rc.Read(func(fd uintptr) bool {
		n, _, peekErr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	switch {
	case peekErr == syscall.EAGAIN:
		return true
	case peekErr != nil || n == 0 || c.raw == c.conn:
		return false
	}
	c.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	n, err = c.conn.Read(buf[:])
	c.conn.SetReadDeadline(time.Time{})
	return n == 0 && errors.Is(err, os.ErrDeadlineExceeded)
}

func (e *exchange) put(c *exConn) {
	e.mu.Lock()
	if len(e.idle) < maxIdleExchange {
		e.idle = append(e.idle, c)
		c = nil
	}
	e.mu.Unlock()
	if c != nil {
		c.conn.Close()
	}
}

var orderRequest = &http.Request{Method: http.MethodPost}

// send places one signed order. It never retries: once the write has begun the order may have been executed. The
// error text is "" on a whole answer, else "timeout" or "failed: <reason>" as `resolve` carries it.
func (e *exchange) send(query, apiKey string) (*exAnswer, string) {
	deadline := time.Now().Add(e.timeout)
	c, err := e.take(deadline)
	if err != nil {
		return nil, failure("connect", err)
	}
	c.conn.SetDeadline(deadline)
	head := "POST " + e.prefix + "/api/v3/order?" + query + " HTTP/1.1\r\nHost: " + e.hostHeader +
		"\r\nX-MBX-APIKEY: " + apiKey + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(c.conn, head); err != nil {
		c.conn.Close()
		return nil, failure("write", err)
	}
	resp, err := http.ReadResponse(c.br, orderRequest)
	if err != nil {
		c.conn.Close()
		return nil, failure("read", err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	resp.Body.Close()
	if err != nil {
		c.conn.Close()
		return nil, failure("read", err)
	}
	if len(body) > maxAnswerBytes {
		c.conn.Close()
		return nil, "failed: read: answer too large"
	}
	if resp.Close {
		c.conn.Close()
	} else {
		c.conn.SetDeadline(time.Time{})
		e.put(c)
	}
	return &exAnswer{status: resp.StatusCode, header: resp.Header, body: body}, ""
}

func failure(phase string, err error) string {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	return "failed: " + phase + ": " + err.Error()
}

// passedHeaders are the exchange's headers Python books from (weights, order counts, a ban's end).
func passedHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for name, values := range h {
		lower := strings.ToLower(name)
		if strings.HasPrefix(lower, "x-mbx-") || lower == "retry-after" {
			out[lower] = strings.Join(values, ", ")
		}
	}
	return out
}
