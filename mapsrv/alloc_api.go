package mapsrv

import "net/http"

// AllocBody is the answer of POST /v1/allocations: the allocation, and
// whether this request made it (201) or it existed (200).
type AllocBody struct {
	Allocation
	New bool `json:"new,omitempty"`
}

// allocRoutes adds the address allocation endpoints (see NewAPI).
func (a *api) allocRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/allocations", a.allocate)
	mux.HandleFunc("GET /v1/allocations/{tenant}/{name}", a.getAllocation)
	mux.HandleFunc("DELETE /v1/allocations/{tenant}/{name}", a.releaseAllocation)
}

func (a *api) allocate(w http.ResponseWriter, r *http.Request) {
	var b AllocRequest
	if !decode(w, r, &b) {
		return
	}
	al, created, err := a.svc.AllocateAddress(r.Context(), b)
	if err != nil {
		fail(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, AllocBody{Allocation: al, New: created})
}

func (a *api) getAllocation(w http.ResponseWriter, r *http.Request) {
	al, err := a.svc.Allocation(r.Context(), r.PathValue("tenant"), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, al)
}

func (a *api) releaseAllocation(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.ReleaseAddress(r.Context(), r.PathValue("tenant"), r.PathValue("name")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
