package kernel

import "slices"

// A Follower is told of every configuration a Runtime applies, so that
// something built from the configuration outside the generation, such as a
// client that a service's handlers call other services with, follows
// config reloads: its interceptors, balancer and routing rules change with
// the file. *BuiltClient is a Follower.
type Follower interface {
	// Prepare builds what cfg asks for without using it yet. An error
	// rejects the whole configuration: the running generation keeps
	// serving and Apply returns the error. Otherwise finish is called
	// exactly once: with true once the new generation is running (the
	// follower switches to what it built), with false when the
	// configuration failed later (it discards it).
	Prepare(cfg *Config) (finish func(ok bool), err error)
}

// Follow makes f follow the configurations the runtime applies from now on
// (not the running one). The returned function stops it.
func (r *Runtime) Follow(f Follower) (stop func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.followers = append(r.followers, f)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if i := slices.Index(r.followers, f); i >= 0 {
			r.followers = slices.Delete(r.followers, i, i+1)
		}
	}
}

// prepareFollowers prepares every follower for cfg; r.mu is held. On error
// the ones already prepared are told to discard.
func (r *Runtime) prepareFollowers(cfg *Config) (finish func(ok bool), err error) {
	var fins []func(bool)
	done := func(ok bool) {
		for _, f := range fins {
			f(ok)
		}
	}
	for _, f := range r.followers {
		fin, err := f.Prepare(cfg)
		if err != nil {
			done(false)
			return nil, err
		}
		fins = append(fins, fin)
	}
	return done, nil
}

// Prepare implements Follower: it builds and starts the policy part of cfg's client
// section (see Reload); finish(true) swaps it in.
func (b *BuiltClient) Prepare(cfg *Config) (func(ok bool), error) {
	pol, insts, err := b.preparePolicy(cfg)
	if err != nil {
		return nil, err
	}
	return func(ok bool) {
		if !ok {
			insts.cleanup()
			return
		}
		b.swap(pol, insts)
	}, nil
}
