package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

var (
	queryUnescape   = url.QueryUnescape
	clientIDPattern = regexp.MustCompile(`^[.A-Z:/a-z0-9_-]{1,36}$`)
	amountPattern   = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	allowedNames    = map[string]bool{"symbol": true, "side": true, "type": true, "quantity": true, "price": true,
		"timeInForce": true, "newClientOrderId": true, "newOrderRespType": true, "recvWindow": true,
		"timestamp": true, "signature": true}
	// Not on the wire Python books: the lane sets these itself.
	notWire = map[string]bool{"timestamp": true, "recvWindow": true, "newClientOrderId": true}
)

// plainParam: only bytes that every allowed value can be made of and that need no escaping in a query string.
// Anything else (a space, a CR, a '#', non-ASCII) could change the exchange request the lane writes by hand.
func plainParam(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' ||
			c == '-' || c == ':' || c == '/') {
			return false
		}
	}
	return true
}

// order is a new order as the bot sent it (rule 1 passed).
type order struct {
	params    [][2]string // in the bot's order, without signature
	values    map[string]string
	payload   string
	signature string
}

// parseOrder applies rule 1 to the parameter string.
func parseOrder(raw string) (*order, bool) {
	if raw == "" {
		return nil, false
	}
	o := &order{values: map[string]string{}}
	parts := strings.Split(raw, "&")
	for i, part := range parts {
		name, value, ok := strings.Cut(part, "=")
		// plainParam also refuses '%' and '+' (rule 1) and a second '='.
		if !ok || name == "" || value == "" || !allowedNames[name] || !plainParam(value) {
			return nil, false
		}
		if _, twice := o.values[name]; twice {
			return nil, false
		}
		o.values[name] = value
		if name == "signature" {
			if i != len(parts)-1 || i == 0 {
				return nil, false
			}
			o.signature = value
			o.payload = raw[:len(raw)-len(part)-1]
		} else {
			o.params = append(o.params, [2]string{name, value})
		}
	}
	if o.signature == "" {
		return nil, false
	}
	return o, true
}

// orderParams picks where the parameters are: the query or a form body, not both (rule 1).
func orderParams(r *http.Request, body []byte) (string, bool) {
	if len(body) == 0 {
		return r.URL.RawQuery, true
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		return "", false
	}
	media, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || media != "application/x-www-form-urlencoded" {
		return "", false
	}
	return string(body), true
}

func digits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// amount: rule 5's number, above 0 and at most ceiling.
func amount(s string, ceiling float64) bool {
	if !amountPattern.MatchString(s) {
		return false
	}
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && f > 0 && f <= ceiling
}

// stampsHold: rule 7, each file as Python saw it.
func stampsHold(stamps []stamp) bool {
	for _, s := range stamps {
		var mtime int64
		var ino uint64
		var size int64
		info, err := os.Stat(s.Path)
		if err == nil {
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				return false
			}
			mtime = info.ModTime().UnixNano()
			ino = uint64(st.Ino)
			size = info.Size()
		} else if !os.IsNotExist(err) {
			return false
		}
		if mtime != s.MtimeNs || ino != s.Ino || size != s.Size {
			return false
		}
	}
	return true
}

// miss says why a request goes to Python, when KEYGUARD_LANE_DEBUG is set; false.
func (l *Lane) miss(why string) bool {
	if debugMisses {
		l.log.Printf("forwarded: %s", why)
	}
	return false
}

var debugMisses = os.Getenv("KEYGUARD_LANE_DEBUG") != ""

// fast tries the fast path (docs/lane.md, rules 1-8). False: nothing was consumed, the request goes to Python. True:
// the verdict is claimed and the bot has been answered (by the exchange's report or through `resolve`).
func (l *Lane) fast(w http.ResponseWriter, r *http.Request, body []byte, fresh map[string]bool) bool {
	raw, ok := orderParams(r, body)
	if !ok {
		return l.miss("rule 1: parameters")
	}
	o, ok := parseOrder(raw)
	if !ok {
		return l.miss("rule 1: parse")
	}
	key := l.ex.key.Load()
	if !key.usable || l.isClosed() {
		return l.miss("exchange key unusable or stopping")
	}
	// Rule 2.
	apiKeys := r.Header.Values("X-Mbx-Apikey")
	side := o.values["side"]
	if len(apiKeys) != 1 || (side != "BUY" && side != "SELL") {
		return l.miss("rule 2: key or side")
	}
	v := l.lookup(apiKeys[0], o.values["symbol"], side)
	nowMs := l.now().UnixMilli()
	if v == nil {
		return l.miss("rule 2: no verdict for " + o.values["symbol"] + " " + side)
	}
	if v.ExpiresMs <= nowMs {
		return l.miss(fmt.Sprintf("rule 2: verdict %d expired %d ms ago", v.ID, nowMs-v.ExpiresMs))
	}
	// Rule 3.
	timestamp, ok := digits(o.values["timestamp"])
	if !ok {
		return l.miss("rule 3: timestamp")
	}
	recvWindow := int64(5000)
	if text, present := o.values["recvWindow"]; present {
		if recvWindow, ok = digits(text); !ok || recvWindow > 60000 {
			return l.miss("rule 3: recvWindow")
		}
	}
	serverMs := nowMs + v.TimeOffsetMs
	if timestamp >= serverMs+1000 || serverMs-timestamp > recvWindow {
		return l.miss("rule 3: time window")
	}
	// Rule 4.
	if !hmac.Equal([]byte(sign([]byte(v.Secret), o.payload)), []byte(strings.ToLower(o.signature))) {
		return l.miss("rule 4: signature")
	}
	// Rule 5.
	typ := o.values["type"]
	price, hasPrice := o.values["price"]
	tif, hasTIF := o.values["timeInForce"]
	switch typ {
	case "MARKET":
		if hasPrice || hasTIF {
			return l.miss("rule 5: MARKET with price")
		}
	case "LIMIT":
		if !hasPrice || !(tif == "GTC" || tif == "IOC" || tif == "FOK") || v.MaxPrice == nil ||
			!amount(price, *v.MaxPrice) {
			return l.miss("rule 5: LIMIT")
		}
	default:
		return l.miss("rule 5: type")
	}
	qty := o.values["quantity"]
	if !amount(qty, v.MaxQty) {
		return l.miss("rule 5: quantity")
	}
	// Not in the doc: a response type Binance would refuse goes to Python, which words the refusal.
	if respType, present := o.values["newOrderRespType"]; present &&
		respType != "ACK" && respType != "RESULT" && respType != "FULL" {
		return l.miss("newOrderRespType")
	}
	// Rule 6 (the id was recorded before this: "fresh" is whether it was new then).
	botCID, hasCID := o.values["newClientOrderId"]
	if hasCID && (!clientIDPattern.MatchString(botCID) || !fresh[botCID]) {
		return l.miss("rule 6: client id")
	}
	// Rule 7.
	if !stampsHold(v.Stamps) {
		return l.miss("rule 7: stamps")
	}
	// Rule 8.
	if !l.claim(v, l.now().UnixMilli(), botCID) {
		return l.miss("rule 8: claim")
	}

	if !hasCID {
		var random [15]byte
		rand.Read(random[:])
		botCID = "gw" + hex.EncodeToString(random[:])
		l.seen.testAndAdd(botCID) // Python maps it from now on: a bot reusing it goes there
	}
	fields := orderFields{ID: v.ID, BotCID: botCID, Type: typ, Qty: qty, Headers: map[string]string{}}
	if hasPrice {
		fields.Price = &price
	}
	var wire strings.Builder
	for _, p := range o.params {
		if notWire[p[0]] {
			continue
		}
		fields.Wire = append(fields.Wire, p)
		wire.WriteString(p[0])
		wire.WriteByte('=')
		wire.WriteString(p[1])
		wire.WriteByte('&')
	}
	l.execute(w, v, key, fields, wire.String())
	return true
}

// execute journals, sends and answers a claimed order; wire is the bot's wire parameters, each followed by '&'.
func (l *Lane) execute(w http.ResponseWriter, v *verdict, key *exchangeKey, fields orderFields, wire string) {
	// One clock reading for the intent log, the exchange's timestamp and sent_ms: the write follows within
	// microseconds, and Python sees the same time in the log and in the report.
	fields.SentMs = l.now().UnixMilli()
	record, _ := json.Marshal(intentRecord{ID: v.ID, Intent: v.Intent, CID: v.CID, Bot: v.Bot, BotCID: fields.BotCID,
		Symbol: v.Symbol, Side: v.Side, Type: fields.Type, Qty: fields.Qty, Price: fields.Price, Wire: fields.Wire,
		SentMs: fields.SentMs})
	if _, err := l.intents.Write(append(record, '\n')); err != nil {
		l.log.Printf("intent log: %v; verdict %d handed back unsent", err, v.ID)
		l.resolve(w, fields, nil, "unsent")
		return
	}
	query := wire + "newClientOrderId=" + v.CID + "&timestamp=" + strconv.FormatInt(fields.SentMs+v.TimeOffsetMs, 10) +
		"&recvWindow=" + strconv.FormatInt(l.ex.recvWindow, 10)
	query += "&signature=" + sign(key.secret, query)
	answer, failed := l.ex.send(query, key.apiKey)
	if answer != nil {
		fields.Headers = passedHeaders(answer.header)
	}
	if failed != "" {
		l.resolve(w, fields, nil, failed)
		return
	}
	reply, ok := botReply(answer, v.CID, fields.BotCID)
	if !ok {
		l.resolve(w, fields, answer, "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.WriteHeader(http.StatusOK)
	w.Write(reply)
	http.NewResponseController(w).Flush()
	status, text := answer.status, string(answer.body)
	fields.Status, fields.Body = &status, &text
	if err := l.send(placedMsg{T: "placed", orderFields: fields}); err != nil {
		l.log.Printf("control channel: placed %d: %v (the order is in the intent log)", v.ID, err)
	}
}

// botReply: a 200 order report for the order's own id, under the bot's id (byte-exact otherwise).
func botReply(answer *exAnswer, cid, botCID string) ([]byte, bool) {
	if answer.status != http.StatusOK {
		return nil, false
	}
	var report map[string]json.RawMessage
	if json.Unmarshal(answer.body, &report) != nil {
		return nil, false
	}
	var got string
	if json.Unmarshal(report["clientOrderId"], &got) != nil || got != cid {
		return nil, false
	}
	needle := []byte(`"clientOrderId":"` + cid + `"`)
	if bytes.Count(answer.body, needle) != 1 {
		return nil, false
	}
	return bytes.Replace(answer.body, needle, []byte(`"clientOrderId":"`+botCID+`"`), 1), true
}

// resolve hands a claimed order to Python and relays its answer to the bot.
func (l *Lane) resolve(w http.ResponseWriter, fields orderFields, answer *exAnswer, failed string) {
	req, answered := l.awaitResolve(fields.ID)
	message := resolveMsg{T: "resolve", Req: req, orderFields: fields}
	if answer != nil {
		status, text := answer.status, string(answer.body)
		message.Status, message.Body = &status, &text
	}
	if failed != "" {
		message.Error = &failed
	}
	if err := l.send(message); err != nil {
		l.log.Printf("control channel: resolve %d: %v", fields.ID, err)
	}
	var m resolvedMsg
	select {
	case m = <-answered:
	case <-l.closed:
		select {
		case m = <-answered:
		default:
			writeError(w, http.StatusServiceUnavailable, -1007, "Timeout waiting for response from backend server. "+
				"Send status unknown; execution status unknown.")
			return
		}
	}
	if m.Status < 100 || m.Status > 999 {
		l.log.Printf("control channel: resolved %d: status %d is not an HTTP status", req, m.Status)
		writeError(w, http.StatusInternalServerError, -1000, "KEYGUARD_INTERNAL: see the gateway's log")
		return
	}
	header := w.Header()
	for name, raw := range m.Headers {
		header.Del(name)
		for _, value := range headerValues(raw) {
			header.Add(name, value)
		}
	}
	if _, ok := header["Content-Type"]; !ok {
		header["Content-Type"] = nil // as Python gave it: no type sniffed by net/http
	}
	header.Set("Content-Length", strconv.Itoa(len(m.Body)))
	w.WriteHeader(m.Status)
	w.Write([]byte(m.Body))
}
