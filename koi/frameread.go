package koi

// framesRead reports whether anything will read the value of a frame of
// the given type: a ws request waiting for a frame, or (once the
// connection is live, or while on_connect runs and frames are held for
// it) an on_event handler for the type or for "*". A frame
// nothing reads is only classified and counted, never decoded.
//
// A ws request registers its waiter before it sends, so a frame that
// arrives before the check and is seen by a waiter registered after it can
// only be one sent before the request: it is delivered with no value.
func (k *Koi) framesRead(typ string) bool {
	if k.nWaiting.Load() > 0 {
		return true
	}
	on := k.rt.set.OnEvent
	// While on_connect runs, frames for on_event are held (see early.go)
	// and handled once it succeeds: they need their value too.
	live := k.liveFlag.Load() || k.early != nil
	return typ != "" && len(on) > 0 && live && (on[typ] != nil || on["*"] != nil)
}
