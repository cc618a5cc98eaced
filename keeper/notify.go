package keeper

import (
	"time"

	"github.com/koipond/koipond/keeper/notify"
)

// notify hands a notice to every webhook that subscribes to it (queued
// per webhook, delivered by the webhook's worker, package notify). It
// never blocks and never fails: a notice is a side effect of something
// already committed. A run's notice gains the run's name and labels.
func (k *Keeper) notify(n notify.Notice) {
	if n.At.IsZero() {
		n.At = time.Now()
	}
	k.log.Info("notice", "kind", n.Kind, "run", n.Run, "title", n.Title)
	if n.Run != "" && (n.Labels == nil || n.RunName == "") {
		if run := k.store.Read().Run(nil, n.Run); run != nil {
			if n.Labels == nil {
				n.Labels = run.Labels
			}
			if n.RunName == "" {
				n.RunName = run.Name
			}
		}
	}
	if k.hooks != nil {
		k.hooks.Enqueue(n)
	}
}
