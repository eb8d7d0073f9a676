package orders

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// Order is one order.
type Order struct {
	ID       int    `json:"id"`
	Item     string `json:"item"`
	Qty      int    `json:"qty"`
	CallerID string `json:"callerAppID"`
}

// Service holds orders in memory. Its zero value is ready to use.
type Service struct {
	mu     sync.Mutex
	orders []Order
}

// Handler returns the service's HTTP handler.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", s.create)
	mux.HandleFunc("GET /orders/{id}", s.get)
	return mux
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	var o Order
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&o); err != nil || o.Item == "" || o.Qty <= 0 {
		http.Error(w, `want {"item":"...","qty":N}`, http.StatusBadRequest)
		return
	}
	o.CallerID = r.Header.Get("Dapr-Caller-App-Id")
	s.mu.Lock()
	o.ID = len(s.orders) + 1
	s.orders = append(s.orders, o)
	s.mu.Unlock()
	w.Header().Set("Location", "/orders/"+strconv.Itoa(o.ID))
	writeJSON(w, http.StatusCreated, o)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || id < 1 || id > len(s.orders) {
		http.Error(w, "no such order", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, s.orders[id-1])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
