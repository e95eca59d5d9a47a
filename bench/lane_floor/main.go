// A compiled floor for bench/gateway.py's latency part: the unavoidable steps of a new order (the same ones as the
// flat floor, flat_process), in a compiled program rather than CPython. It measures what a compiled front for new
// orders would cost before the design is built: it is not a gateway (one bot, one symbol, no replays, no error paths).
//
// Per order: the bot's HMAC and timestamp; a stat of the three state files (account and bot kill switches, trading
// state); the notional and position checks for the bot and the account; the journal row and mapping appended to an
// intent log before the order leaves; the charge on a shared budget file (flock, read, write, unlock); the exchange
// signature; the send over a kept-alive connection; the answer under the bot's id. The rows are handed to a separate
// Python process (the "adopter", as the Python gateway would take them) over a Unix socket: one line while the order
// is out (it inserts the row and the mapping) and one after the answer is written (it records the final state).
//
//	lane-floor -upstream URL -api-key KEY -state DIR -adopter SOCKET   (the exchange secret on stdin, one line)
//
// LANE_SKIP (comma-separated: adopter, budget, intents) leaves steps out, to measure what each costs.
package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const botKey = "flatflatflatflatflatflatflatflatflatflatflatflatflatflatflatflat"

var botSecret = []byte("flat-bot-secret")

type floor struct {
	upstream   string
	apiKey     string
	secret     []byte
	stateFiles []string
	intents    *os.File
	budget     *os.File
	mu         sync.Mutex // the in-memory snapshots, as the envelope's lock
	position   float64
	inFlight   float64
	adopter    net.Conn
	adopterMu  sync.Mutex
	upMu       sync.Mutex
	up         net.Conn
	upReader   *bufio.Reader
}

func refuse(w http.ResponseWriter, status int, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"code":%d,"msg":%q}`, code, msg)
}

var skip = os.Getenv("LANE_SKIP")

func (f *floor) tell(line []byte) {
	if strings.Contains(skip, "adopter") {
		return
	}
	f.adopterMu.Lock()
	defer f.adopterMu.Unlock()
	f.adopter.Write(line) //nolint:errcheck // the bench's adopter; a failure shows as missing rows
}

func (f *floor) charge() error {
	if strings.Contains(skip, "budget") {
		return nil
	}
	fd := int(f.budget.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(fd, syscall.LOCK_UN) //nolint:errcheck
	buf := make([]byte, 4096)
	n, err := f.budget.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return err
	}
	var state map[string]float64
	if n == 0 || json.Unmarshal(buf[:n], &state) != nil {
		state = map[string]float64{}
	}
	window := float64(time.Now().Unix() / 10)
	if state["window"] != window {
		state["window"], state["orders"], state["weight"] = window, 0, 0
	}
	state["orders"]++
	state["weight"]++
	out, _ := json.Marshal(state)
	if _, err := f.budget.WriteAt(out, 0); err != nil {
		return err
	}
	return f.budget.Truncate(int64(len(out)))
}

func (f *floor) order(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v3/order" {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}")) //nolint:errcheck
		return
	}
	raw := r.URL.RawQuery
	cut := strings.LastIndex(raw, "&signature=")
	if cut < 0 || r.Header.Get("X-MBX-APIKEY") != botKey {
		refuse(w, 401, -2015, "Invalid API-key, IP, or permissions for action.")
		return
	}
	payload, signature := raw[:cut], raw[cut+len("&signature="):]
	mac := hmac.New(sha256.New, botSecret)
	mac.Write([]byte(payload))
	if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(signature)) {
		refuse(w, 401, -2015, "Invalid API-key, IP, or permissions for action.")
		return
	}
	params, err := url.ParseQuery(payload)
	if err != nil {
		refuse(w, 400, -1100, "Illegal characters found in a parameter.")
		return
	}
	now := time.Now()
	stamp, _ := strconv.ParseInt(params.Get("timestamp"), 10, 64)
	if d := now.UnixMilli() - stamp; d > 5000 || d < -5000 {
		refuse(w, 400, -1021, "Timestamp for this request is outside of the recvWindow.")
		return
	}
	for _, path := range f.stateFiles {
		os.Stat(path) //nolint:errcheck // absent: nothing engaged
	}
	quantity, err := strconv.ParseFloat(params.Get("quantity"), 64)
	if err != nil {
		refuse(w, 400, -1100, "Illegal characters found in parameter 'quantity'.")
		return
	}
	side := params.Get("side")
	f.mu.Lock()
	signed := quantity
	if side == "SELL" {
		signed = -quantity
	}
	if quantity*60000 > 5000 || f.position+f.inFlight+signed > 10 || f.position+f.inFlight+signed < -10 {
		f.mu.Unlock()
		refuse(w, 400, -2010, "KEYGUARD_MAX_ORDER_NOTIONAL: over the cap")
		return
	}
	f.inFlight += signed
	f.mu.Unlock()
	var id [16]byte
	rand.Read(id[:]) //nolint:errcheck
	intent := hex.EncodeToString(id[:])
	cid := "kg-" + intent[:24] + "-1"
	botCid := params.Get("newClientOrderId")
	if botCid == "" {
		botCid = intent[:30]
	}
	at := now.UTC().Format("2006-01-02 15:04:05.000000")
	row, _ := json.Marshal([]any{cid, intent, "bot", params.Get("symbol"), side, params.Get("type"), quantity, nil,
		at, at, at})
	mapping, _ := json.Marshal([]any{"bot", botCid, intent, params.Get("symbol"), at})
	record := append(append(append(append([]byte(`["`+cid+`","`+intent+`",`), row...), ','), mapping...), "]\n"...)
	if strings.Contains(skip, "intents") {
	} else if _, err := f.intents.Write(record); err != nil {
		refuse(w, 500, -1000, "KEYGUARD_INTERNAL: intent log")
		return
	}
	if err := f.charge(); err != nil {
		refuse(w, 500, -1000, "KEYGUARD_INTERNAL: budget")
		return
	}
	params.Del("timestamp")
	params.Del("signature")
	params.Del("recvWindow")
	params.Set("newClientOrderId", cid)
	params.Set("timestamp", strconv.FormatInt(time.Now().UnixMilli(), 10))
	query := params.Encode()
	mac = hmac.New(sha256.New, f.secret)
	mac.Write([]byte(query))
	query += "&signature=" + hex.EncodeToString(mac.Sum(nil))
	req, _ := http.NewRequest(http.MethodPost, f.upstream+"/api/v3/order?"+query, nil)
	req.Header.Set("X-MBX-APIKEY", f.apiKey)
	// The adopter inserts the row and the mapping while the order is out.
	f.tell(append(append([]byte(`{"placed":[`), record[1:len(record)-2]...), "]}\n"...))
	resp, err := f.send(req)
	if err != nil {
		refuse(w, 503, -1007, "Timeout waiting for response from backend server. Send status unknown; execution "+
			"status unknown.")
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		refuse(w, 503, -1007, "Send status unknown.")
		return
	}
	answer := bytes.Replace(body, []byte(`"clientOrderId":"`+cid+`"`), []byte(`"clientOrderId":"`+botCid+`"`), 1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	w.Write(answer) //nolint:errcheck
	if flusher, ok := w.(http.Flusher); ok {
		flusher.Flush()
	}
	// After the answer: the final state to the adopter (it updates the row), the books here.
	var report struct {
		Status      string `json:"status"`
		OrderID     int64  `json:"orderId"`
		ExecutedQty string `json:"executedQty"`
		QuoteQty    string `json:"cummulativeQuoteQty"`
	}
	json.Unmarshal(body, &report) //nolint:errcheck
	executed, _ := strconv.ParseFloat(report.ExecutedQty, 64)
	quote, _ := strconv.ParseFloat(report.QuoteQty, 64)
	line, _ := json.Marshal(map[string]any{"answered": []any{report.Status, strconv.FormatInt(report.OrderID, 10),
		executed, quote, time.Now().UTC().Format("2006-01-02 15:04:05.000000"), cid}})
	f.tell(append(line, '\n'))
	f.mu.Lock()
	f.inFlight -= signed
	if side == "SELL" {
		f.position -= executed
	} else {
		f.position += executed
	}
	f.mu.Unlock()
}

// send writes the request on a kept-alive connection and reads the answer on the same goroutine (net/http's Transport
// hands each request between goroutines: a wake-up each way). One connection, one order at a time.
func (f *floor) send(req *http.Request) (*http.Response, error) {
	f.upMu.Lock()
	defer f.upMu.Unlock()
	if f.up == nil {
		conn, err := net.Dial("tcp", strings.TrimPrefix(f.upstream, "http://"))
		if err != nil {
			return nil, err
		}
		conn.(*net.TCPConn).SetNoDelay(true) //nolint:errcheck
		f.up, f.upReader = conn, bufio.NewReaderSize(conn, 65536)
	}
	head := req.Method + " " + req.URL.RequestURI() + " HTTP/1.1\r\nHost: " + req.URL.Host +
		"\r\nX-MBX-APIKEY: " + req.Header.Get("X-MBX-APIKEY") + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := f.up.Write([]byte(head)); err != nil {
		f.up.Close()
		f.up = nil
		return nil, err
	}
	resp, err := http.ReadResponse(f.upReader, req)
	if err != nil {
		f.up.Close()
		f.up = nil
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.up.Close()
		f.up = nil
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func main() {
	upstream := flag.String("upstream", "", "the exchange's base URL")
	apiKey := flag.String("api-key", "", "the exchange key")
	state := flag.String("state", "", "a state directory")
	adopter := flag.String("adopter", "", "the adopter's Unix socket")
	flag.Parse()
	secret, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && secret == "" {
		fmt.Fprintln(os.Stderr, "lane-floor: the exchange secret on stdin, one line")
		os.Exit(2)
	}
	intents, err := os.OpenFile(filepath.Join(*state, "lane-journal.intents"), os.O_WRONLY|os.O_APPEND|os.O_CREATE,
		0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	budget, err := os.OpenFile(filepath.Join(*state, "lane-budget"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	conn, err := net.Dial("unix", *adopter)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	f := &floor{
		upstream: strings.TrimRight(*upstream, "/"), apiKey: *apiKey, secret: []byte(strings.TrimSpace(secret)),
		intents: intents, budget: budget, adopter: conn,
	}
	for _, name := range []string{"account.kill", "bot.kill", "trading_state.json"} {
		f.stateFiles = append(f.stateFiles, filepath.Join(*state, name))
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("http://%s\n", listener.Addr())
	os.Stdout.Sync() //nolint:errcheck
	server := &http.Server{Handler: http.HandlerFunc(f.order), ReadHeaderTimeout: 10 * time.Second}
	server.Serve(listener) //nolint:errcheck
}
