// The dashboard page: the mesh, the jobs with live progress, one job's fragments and their logs,
// and the operator's buttons. preact + htm as plain ES modules: no build step.
import htm from 'htm'
import { h, render } from 'preact'
import { useCallback, useEffect, useRef, useState } from 'preact/hooks'
import { ApiError, api, followJob, token } from './api.js'

const html = htm.bind(h)

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED'])
const FRAGMENT_STATES = ['SUCCEEDED', 'RUNNING', 'RUNNABLE', 'FAILED', 'CANCELLED']
/** How often the mesh and the job list are read again, ms. */
const POLL_MS = 2000
/** Event streams open at once: a browser holds about six connections to one daemon in all. */
const MAX_STREAMS = 3
/** Fragments drawn in the grid at most (the rest are counted). */
const MAX_CELLS = 5000

const shortId = (id) => (id.length > 12 ? `${id.slice(0, 6)}…${id.slice(-4)}` : id)
const oneLine = (err) => String(err?.message ?? err).split('\n')[0]

function ago(iso) {
  if (iso === null || iso === undefined) return ''
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m ago`
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`
  return `${Math.floor(s / 86400)}d ago`
}

/** Poll `read` every `ms` while mounted (and once at once); `key` restarts it. */
function usePoll(read, ms, key) {
  useEffect(() => {
    let stopped = false
    let timer
    const tick = async () => {
      await read()
      if (!stopped) timer = setTimeout(tick, ms)
    }
    void tick()
    return () => {
      stopped = true
      clearTimeout(timer)
    }
  }, [key])
}

function TokenForm({ needed, onToken }) {
  const [value, setValue] = useState('')
  const set = token.get() !== ''
  const submit = (e) => {
    e.preventDefault()
    token.set(value.trim())
    setValue('')
    onToken()
  }
  return html`<form class="token" onSubmit=${submit}>
    <label
      >API token
      <input
        type="password"
        name="token"
        autocomplete="off"
        placeholder=${set ? 'set for this tab' : needed ? 'this daemon needs a token' : 'none'}
        value=${value}
        onInput=${(e) => setValue(e.currentTarget.value)}
    /></label>
    <button type="submit">Use token</button>
    ${
      set &&
      html`<button
      type="button"
      onClick=${() => {
        token.set('')
        onToken()
      }}
    >
      Forget
    </button>`
    }
  </form>`
}

function Mesh({ peers, act }) {
  if (peers === null) return html`<section><h2>Mesh</h2><p>…</p></section>`
  return html`<section class="mesh">
    <h2>Mesh <small>${peers.filter((p) => p.state === 'alive').length} of ${peers.length} alive</small></h2>
    <table>
      <thead>
        <tr>
          <th>name</th>
          <th>peer</th>
          <th>state</th>
          <th>load</th>
          <th>synced</th>
          <th>draining</th>
          <th></th>
        </tr>
      </thead>
      <tbody>
        ${peers.map((p) => {
          const target = p.self ? 'self' : p.peerId
          const load = p.capacity > 0 ? Math.min(1, p.running / p.capacity) : 0
          return html`<tr key=${p.peerId} data-peer=${p.name} data-state=${p.state}>
            <td>${p.name}${p.self ? html` <em>(this daemon)</em>` : ''}</td>
            <td title=${p.peerId}><code>${shortId(p.peerId)}</code></td>
            <td><span class=${`pill ${p.state}`}>${p.state}</span></td>
            <td>
              <span class="meter" title=${`${p.running} running of ${p.capacity}`}
                ><span style=${{ width: `${Math.round(load * 100)}%` }}></span
              ></span>
              ${p.running} / ${p.capacity}
            </td>
            <td>${p.synced ? 'yes' : 'no'}</td>
            <td class="draining">${p.draining === true ? 'yes' : p.draining === false ? 'no' : '?'}</td>
            <td>
              ${
                p.draining === true
                  ? html`<button onClick=${() => act(`undrain ${p.name}`, () => api.undrain(target))}>
                    Undrain
                  </button>`
                  : html`<button onClick=${() => act(`drain ${p.name}`, () => api.drain(target))}>Drain</button>`
              }
            </td>
          </tr>`
        })}
      </tbody>
    </table>
  </section>`
}

/** The fragment counts of a job as one bar, coloured by state. */
function Progress({ summary, total }) {
  const n = Math.max(1, total)
  return html`<span class="progress" title=${FRAGMENT_STATES.map((s) => `${s} ${summary[s] ?? 0}`).join(', ')}>
    ${FRAGMENT_STATES.map((s) =>
      (summary[s] ?? 0) > 0
        ? html`<span class=${s} style=${{ width: `${(100 * summary[s]) / n}%` }}></span>`
        : null
    )}
  </span>`
}

const count = (j, states) => states.reduce((n, s) => n + (j.statusSummary[s] ?? 0), 0)
/** Leaf fragments that ended, and all of them (a bisected fragment counts as its halves). */
const finished = (j) => count(j, ['SUCCEEDED', 'FAILED', 'CANCELLED'])
const leaves = (j) => count(j, FRAGMENT_STATES)

function JobButtons({ job, act }) {
  return html`${
    !TERMINAL.has(job.state) &&
    html`<button class="cancel" onClick=${() => act(`cancel ${job.id}`, () => api.cancel(job.id))}>
      Cancel
    </button>`
  }
  ${
    (job.state === 'FAILED' || job.state === 'CANCELLED') &&
    !job.compacted &&
    html`<button class="retry" onClick=${() => act(`retry ${job.id}`, () => api.retry(job.id))}>Retry</button>`
  }`
}

function Jobs({ jobs, live, selected, select, act }) {
  if (jobs === null) return html`<section><h2>Jobs</h2><p>…</p></section>`
  return html`<section class="jobs">
    <h2>Jobs <small>${jobs.length}</small></h2>
    ${
      jobs.length === 0
        ? html`<p>No jobs yet.</p>`
        : html`<table>
          <thead>
            <tr>
              <th>job</th>
              <th>task</th>
              <th>tenant</th>
              <th>state</th>
              <th>progress</th>
              <th>created</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            ${jobs.map(
              (j) => html`<tr
                key=${j.id}
                data-job=${j.id}
                data-state=${j.state}
                class=${j.id === selected ? 'selected' : ''}
              >
                <td>
                  <a
                    href=${`#job=${j.id}`}
                    onClick=${(e) => {
                      e.preventDefault()
                      select(j.id)
                    }}
                    title=${j.id}
                    ><code>${shortId(j.id)}</code></a
                  >
                  ${j.name ? html` ${j.name}` : ''}
                </td>
                <td>${j.task}</td>
                <td>${j.tenant}</td>
                <td>
                  <span class=${`pill ${j.state}`}>${j.state}</span>
                  ${live.has(j.id) ? html` <span class="live" title="live through its event stream">●</span>` : ''}
                </td>
                <td><${Progress} summary=${j.statusSummary} total=${leaves(j)} /> ${finished(j)} / ${leaves(j)}</td>
                <td title=${j.createdAt}>${ago(j.createdAt)}</td>
                <td><${JobButtons} job=${j} act=${act} /></td>
              </tr>`
            )}
          </tbody>
        </table>`
    }
  </section>`
}

/** Follows one job's event stream while mounted; renders nothing. */
function Follow({ id, onJob, onError }) {
  useEffect(() => {
    const abort = new AbortController()
    let last = null
    let timer
    const run = () =>
      followJob(
        id,
        (j) => {
          last = j.state
          onJob(j)
        },
        abort.signal
      ).then(
        () => {
          // Ended before a terminal state (a daemon restart, a proxy): follow it again.
          if (!abort.signal.aborted && !TERMINAL.has(last)) timer = setTimeout(run, POLL_MS)
        },
        (err) => {
          if (abort.signal.aborted) return
          onError(err)
          timer = setTimeout(run, POLL_MS)
        }
      )
    void run()
    return () => {
      abort.abort()
      clearTimeout(timer)
    }
  }, [id])
  return null
}

function SubmitForm({ act, select }) {
  const [spec, setSpec] = useState('{"task":"echo","range":{"start":0,"end":10},"fragmentSize":3}')
  const submit = (e) => {
    e.preventDefault()
    act('submit', async () => {
      try {
        JSON.parse(spec)
      } catch (err) {
        throw new Error(`spec: not JSON (${oneLine(err)})`)
      }
      const job = await api.submit(spec)
      select(job.id)
      return job
    })
  }
  return html`<section class="submit">
    <h2>Submit a job</h2>
    <form onSubmit=${submit}>
      <label for="spec">Job spec (JSON, as for <code>shoal submit</code>)</label>
      <textarea
        id="spec"
        name="spec"
        rows="3"
        spellcheck="false"
        value=${spec}
        onInput=${(e) => setSpec(e.currentTarget.value)}
      ></textarea>
      <button type="submit">Submit</button>
    </form>
  </section>`
}

/** One line about a job: what it runs, how it is cut, whose it is, when. */
function facts(j) {
  const parts = [
    `task ${j.task}`,
    `${j.items} items in ${j.fragments} fragments of ${j.fragmentSize}`,
    `tenant ${j.tenant}`,
    `priority ${j.priority}`,
    `accepted by ${shortId(j.acceptedBy)}`,
    `created ${ago(j.createdAt)}`
  ]
  if (j.finishedAt) parts.push(`finished ${ago(j.finishedAt)}`)
  if (j.schedule) parts.push(`schedule ${j.schedule}`)
  return parts.join(' · ')
}

/** One line about a try: its attempt, where it ran, how it ended. */
function tryLine(t) {
  const parts = [`attempt ${t.attempt}`, `on ${shortId(t.peer ?? '')}`, `exit ${t.exitCode ?? '–'}`]
  if (t.reason) parts.push(t.reason)
  return parts.join(' · ')
}

function Fragments({ job, act }) {
  const [frags, setFrags] = useState(null)
  const [log, setLog] = useState(null)
  const version = JSON.stringify([job.state, job.statusSummary])
  useEffect(() => {
    let stale = false
    api.fragments(job.id).then(
      (f) => {
        if (!stale) setFrags(f)
      },
      (err) => {
        if (!stale) setFrags({ error: oneLine(err) })
      }
    )
    return () => {
      stale = true
    }
  }, [job.id, version])
  useEffect(() => setLog(null), [job.id])
  const open = (f) =>
    act(
      `log of ${f.path}`,
      async () => {
        try {
          setLog({ path: f.path, ...(await api.log(job.id, f.path)) })
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) setLog({ path: f.path, missing: oneLine(err) })
          else throw err
        }
      },
      { quiet: true }
    )
  return html`<section class="job">
    <h2>
      Job <code>${job.id}</code> <span class=${`pill ${job.state}`} data-job-state=${job.state}>${job.state}</span>
      <${JobButtons} job=${job} act=${act} />
    </h2>
    <p class="facts">${facts(job)}</p>
    <p class="legend">
      ${FRAGMENT_STATES.map(
        (s) => html`<span class=${`cell ${s}`}></span> ${s.toLowerCase()} ${job.statusSummary[s] ?? 0} `
      )}
    </p>
    ${
      frags === null
        ? html`<p>…</p>`
        : frags.error !== undefined
          ? html`<p class="note">fragments: ${frags.error}</p>`
          : html`<div class="grid" aria-label="fragments">
              ${frags.slice(0, MAX_CELLS).map(
                (f) => html`<button
                  key=${f.path}
                  class=${`cell ${f.state}${log?.path === f.path ? ' open' : ''}`}
                  data-path=${f.path}
                  title=${`${f.path}: ${f.state}, items ${f.itemRange.start}..${f.itemRange.end - 1}, attempt ${f.attempt}${f.peer ? `, on ${shortId(f.peer)}` : ''}${f.exitCode !== null ? `, exit ${f.exitCode}` : ''}${f.statusReason ? ` (${f.statusReason})` : ''}`}
                  onClick=${() => open(f)}
                ></button>`
              )}
            </div>
            ${frags.length > MAX_CELLS ? html`<p class="note">and ${frags.length - MAX_CELLS} more fragments</p>` : ''}`
    }
    ${
      log !== null &&
      html`<div class="log">
      <h3>
        Fragment <code>${log.path}</code>
        ${log.missing === undefined ? ` · ${tryLine(log)}` : ''}
      </h3>
      <pre>${log.missing ?? (log.text === '' ? '(no stderr)' : log.text)}</pre>
    </div>`
    }
  </section>`
}

const daemonLine = (h) => `${h.state} · sees ${h.peers} alive${h.synced ? '' : ' · not synced yet'}`

function App() {
  const [peers, setPeers] = useState(null)
  const [health, setHealth] = useState(null)
  const [jobs, setJobs] = useState(null)
  const [selected, setSelected] = useState(() => /^#job=(.+)$/.exec(location.hash)?.[1] ?? null)
  const [error, setError] = useState('')
  const [notice, setNotice] = useState('')
  const [needToken, setNeedToken] = useState(false)
  const [epoch, setEpoch] = useState(0)
  const streamed = useRef(new Map())

  const fail = useCallback((what, err) => {
    if (err instanceof ApiError && err.status === 401) setNeedToken(true)
    setError(`${what}: ${oneLine(err)}`)
  }, [])

  /** An operator's action: its error, or what it did, on the page's one status line. */
  const act = useCallback(
    async (what, fn, { quiet = false } = {}) => {
      try {
        await fn()
        // What the streams said before the action (a cancel, a retry) is no longer news.
        streamed.current.clear()
        setError('')
        if (!quiet) setNotice(`${what}: done`)
        setEpoch((e) => e + 1)
      } catch (err) {
        setNotice('')
        fail(what, err)
      }
    },
    [fail]
  )

  const select = (id) => {
    setSelected(id)
    history.replaceState(null, '', id === null ? '#' : `#job=${id}`)
  }

  // A summary from an event stream may be newer than the list read at the same time: the list's
  // wins once it shows as much progress (or an end).
  const merge = (list) =>
    list.map((x) => {
      const s = streamed.current.get(x.id)
      if (s === undefined || TERMINAL.has(x.state)) {
        streamed.current.delete(x.id)
        return x
      }
      return finished(s) > finished(x) || TERMINAL.has(s.state) ? s : x
    })

  usePoll(
    async () => {
      try {
        const [p, hl, j] = await Promise.all([api.peers(), api.health(), api.jobs()])
        setPeers(p)
        setHealth(hl)
        setJobs(merge(j))
        setNeedToken(false)
        setError((e) => (e.startsWith('refresh:') ? '' : e))
      } catch (err) {
        fail('refresh', err)
      }
    },
    POLL_MS,
    epoch
  )

  const onJob = useCallback((j) => {
    streamed.current.set(j.id, j)
    setJobs((list) => {
      if (list === null) return [j]
      return list.some((x) => x.id === j.id) ? list.map((x) => (x.id === j.id ? j : x)) : [j, ...list]
    })
  }, [])
  const onStreamError = useCallback((err) => fail('events', err), [fail])

  const job = jobs?.find((j) => j.id === selected) ?? null
  // Follow the selected job and the newest unfinished ones through their event streams.
  const follow = []
  if (job !== null && !TERMINAL.has(job.state)) follow.push(job.id)
  for (const j of jobs ?? []) {
    if (follow.length >= MAX_STREAMS) break
    if (!TERMINAL.has(j.state) && !follow.includes(j.id)) follow.push(j.id)
  }
  const live = new Set(follow)
  const self = peers?.find((p) => p.self)

  return html`<header>
      <h1>Shoal</h1>
      <span class="daemon">
        ${self ? html`daemon <b>${self.name}</b> · ` : ''}
        ${health ? html`<span class=${`pill ${health.status}`}>${health.status}</span> ${daemonLine(health)}` : ''}
      </span>
      <${TokenForm} needed=${needToken} onToken=${() => setEpoch((e) => e + 1)} />
    </header>
    <p class=${`status ${error !== '' ? 'error' : ''}`} role="status" title=${error || notice}>${error || notice}</p>
    ${follow.map((id) => html`<${Follow} key=${id} id=${id} onJob=${onJob} onError=${onStreamError} />`)}
    <${Mesh} peers=${peers} act=${act} />
    <${SubmitForm} act=${act} select=${select} />
    <${Jobs} jobs=${jobs} live=${live} selected=${selected} select=${select} act=${act} />
    ${
      job !== null
        ? html`<${Fragments} key=${job.id} job=${job} act=${act} />`
        : selected !== null && jobs !== null
          ? html`<p class="note">Job ${selected} is not in the list.</p>`
          : ''
    }`
}

render(html`<${App} />`, document.getElementById('app'))
