// rsvp in the browser: a hash-routed page over the public API (docs/api.md). No framework and
// no build step. User text is only ever set as text (`h` appends strings as text nodes), never
// parsed as markup, and the server's Content-Security-Policy allows no inline script anyway.

// ---------------------------------------------------------------------------------------------
// DOM

/** `h('p', {class: 'x'}, 'text', child)`: an element; `on*` attributes are listeners. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child != null && child !== false) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const main = document.getElementById('main');
const flashBox = document.getElementById('flash');

/** A message read out by screen readers, kept through the next screen change (an action that
 * navigates says what it did on the screen it lands on), cleared by the one after. */
function flash(text, kind = 'ok') {
  flashBox.textContent = text;
  flashBox.dataset.kind = kind; // an error never shows in the colours of a success
  flashBox.dataset.keep = kind === 'ok' ? 'yes' : 'no'; // nor outlives the screen it is about
}

/** An error shown for an earlier attempt goes when the next one starts. */
function clearError() {
  if (flashBox.dataset.kind === 'error') flashBox.textContent = '';
}

/** After an action that changed the screen in place, the focus goes to the message saying what
 * changed (the button pressed may be gone), so a keyboard or screen reader user is not lost. */
function focusMessage() {
  flashBox.setAttribute('tabindex', '-1');
  flashBox.focus();
}

// ---------------------------------------------------------------------------------------------
// The API

/** A refused or failed call, with what the problem+json said. */
class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.retryAfter = retryAfter;
  }

  /** What a person should read. */
  get readable() {
    switch (this.status) {
      case 0:
        return 'The server can not be reached. Check your connection, then try again.';
      case 429:
        return `Too many attempts. Try again in ${this.retryAfter === 1 ? '1 second' : `${this.retryAfter ?? 'a few'} seconds`}.`;
      case 503:
        return `The service is unavailable for a moment${this.retryAfter ? ` (try again in ${this.retryAfter} seconds)` : ''}.`;
      default:
        if (this.status >= 500) return 'Something went wrong on the server. Try again in a moment.';
        return sentence(this.message);
    }
  }
}

/** A message naming the API's fields by what the form calls them. */
function humane(message) {
  return String(message).replace(/\bstarts_at\b/g, 'the start').replace(/\bends_at\b/g, 'the end');
}

function sentence(text) {
  const t = String(text || '').trim();
  return t ? t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.') : '';
}

async function problemOf(response) {
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    // not JSON: the status says enough
  }
  const retry = Number.parseInt(response.headers.get('retry-after') ?? '', 10);
  return new ApiError(response.status, problem, Number.isFinite(retry) ? retry : null);
}

async function send(method, path, body, token) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15000),
    });
  } catch {
    throw new ApiError(0);
  }
}

// The session: the token pair in localStorage, shared by the tabs of this browser.
const SESSION = 'rsvp.session';
const session = {
  get() {
    try {
      return JSON.parse(localStorage.getItem(SESSION));
    } catch {
      return null;
    }
  },
  save(pair) {
    const value = {
      access: pair.access_token,
      refresh: pair.refresh_token,
      expires: Date.now() + pair.expires_in * 1000,
    };
    localStorage.setItem(SESSION, JSON.stringify(value));
    return value;
  },
  clear() {
    localStorage.removeItem(SESSION);
    me = null;
  },
};

/** The account logged in, once known. */
let me = null;

/**
 * A fresh token pair, or null when the session is over. Refresh tokens are single use and a
 * reused one revokes the whole family, so tabs take turns (a Web Lock) and a tab adopts the
 * pair another tab just obtained instead of spending the old refresh token again.
 */
async function refreshSession(staleAccess) {
  const run = async () => {
    const current = session.get();
    if (!current) return null;
    if (current.access !== staleAccess && current.expires - 30000 > Date.now()) return current;
    const response = await send('POST', '/api/auth/refresh', { refresh_token: current.refresh });
    if (response.ok) return session.save(await response.json());
    if (response.status === 401 || response.status === 400 || response.status === 422) {
      session.clear(); // used, expired or revoked: logged out, cleanly
      return null;
    }
    throw await problemOf(response);
  };
  return navigator.locks ? navigator.locks.request('rsvp-refresh', run) : run();
}

/** Calls the API as the logged-in account (if any); the answer's JSON, or an ApiError. */
async function api(method, path, body) {
  let current = session.get();
  if (current && current.expires - 30000 < Date.now()) current = await refreshSession(current.access);
  let response = await send(method, path, body, current?.access);
  if (response.status === 401 && current) {
    current = await refreshSession(current.access);
    if (current) response = await send(method, path, body, current.access);
  }
  if (!response.ok) throw await problemOf(response);
  return response.status === 204 ? null : response.json();
}

/** Who is logged in (null for nobody), asked once per page load. */
async function whoAmI() {
  if (me || !session.get()) return me;
  try {
    me = await api('GET', '/api/users/me');
  } catch (error) {
    if (error.status !== 401) throw error;
    session.clear();
  }
  return me;
}

async function logIn(email, password) {
  session.save(await api('POST', '/api/auth/login', { email, password }));
  me = null;
  return whoAmI();
}

// ---------------------------------------------------------------------------------------------
// Formatting

const DATE_TIME = {
  weekday: 'short', day: 'numeric', month: 'short', year: 'numeric',
  hour: '2-digit', minute: '2-digit', timeZoneName: 'short',
};
const dateTime = new Intl.DateTimeFormat(undefined, DATE_TIME);
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** The event's times, in `timeZone` (default: the venue's). */
function when(event, timeZone = shownZone(event.time_zone || 'UTC')) {
  const full = new Intl.DateTimeFormat(undefined, { ...DATE_TIME, timeZone });
  const short = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', timeZoneName: 'short', timeZone });
  const day = new Intl.DateTimeFormat('en-CA', { year: 'numeric', month: '2-digit', day: '2-digit', timeZone });
  const start = new Date(event.starts_at);
  const end = new Date(event.ends_at);
  const sameDay = day.format(start) === day.format(end);
  return `${full.format(start)} – ${sameDay ? short.format(end) : full.format(end)}`;
}

/**
 * `text` as nodes, its http(s) addresses as links (opened without telling the target where from,
 * nor giving it this page); nothing else becomes a link, and all of it stays text.
 */
function linked(text) {
  const nodes = [];
  let rest = text;
  for (let at = rest.search(/https?:\/\//); at >= 0; at = rest.search(/https?:\/\//)) {
    nodes.push(rest.slice(0, at));
    const address = rest.slice(at).match(/^[^\s<>"]+/)[0].replace(/[.,;:!?)]+$/, '');
    const url = URL.canParse(address) ? new URL(address) : null;
    nodes.push(url && (url.protocol === 'https:' || url.protocol === 'http:') && url.host
      ? h('a', { href: url.href, rel: 'noopener noreferrer nofollow', target: '_blank' }, address)
      : address);
    rest = rest.slice(at + Math.max(address.length, 1));
  }
  nodes.push(rest);
  return nodes;
}

/** The venue's zone in words: `Europe/Berlin` → `Berlin`. */
function place(timeZone) {
  return timeZone.split('/').pop().replaceAll('_', ' ');
}

function seats(event) {
  const waiting = event.waitlist_length ? ` · ${event.waitlist_length} on the waitlist` : '';
  return `${event.seats_taken} of ${event.capacity} seats taken${waiting}`;
}

/** The wall-clock time of instant `ms` in `timeZone`, as a datetime-local input writes it. */
function wallTime(ms, timeZone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit',
  }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
}

/** `2026-12-01T18:00` at the venue, for a datetime-local input. */
function localInput(iso, timeZone) {
  return wallTime(Date.parse(iso), timeZone);
}

/**
 * The instants at which the clocks of `timeZone` show `wall` (`2026-03-29T02:30`): one as a
 * rule, none in the hour skipped when summer time starts, two in the hour repeated when it ends.
 */
function instantsAt(wall, timeZone) {
  const asUtc = Date.parse(`${wall}:00Z`);
  if (Number.isNaN(asUtc)) return [];
  // The zone's offset a day and a half either side covers any change of rule around `wall`.
  const offsets = new Set([-36, 36].map((hours) => {
    const probe = asUtc + hours * 3600e3;
    return Date.parse(`${wallTime(probe, timeZone)}:00Z`) - Math.floor(probe / 60e3) * 60e3;
  }));
  return [...offsets].map((offset) => asUtc - offset)
    .filter((ms) => wallTime(ms, timeZone) === wall)
    .sort((a, b) => a - b);
}

/** Every zone the browser knows (the server knows the same database). */
const ZONES = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];

/** Where the viewer stands; `promoted`: the seat came from the waitlist (a notification said so). */
/** The events whose seat the viewer got from a waitlist (their latest notifications say). */
async function promotedEvents() {
  try {
    const page = await api('GET', '/api/users/me/notifications?limit=100');
    return new Set(page.items.filter((n) => n.kind === 'promotion').map((n) => n.event_id));
  } catch {
    return new Set(); // only a nicer sentence is lost
  }
}

function stateOf(registration, promoted = false, event = registration?.event) {
  if (!registration) return h('p', { class: 'state', 'data-state': 'none' }, 'You are not registered.');
  if (event?.status === 'cancelled') {
    return h('p', { class: 'state', 'data-state': 'cancelled' }, 'This event was cancelled: it will not take place.');
  }
  if (registration.status === 'confirmed') {
    return h('p', { class: 'state confirmed', 'data-state': 'confirmed' },
      promoted ? 'You got a seat from the waitlist.' : 'You have a seat.');
  }
  return h('p', { class: 'state waitlisted', 'data-state': 'waitlisted' },
    `You are on the waitlist, at position ${registration.position}.`);
}

// ---------------------------------------------------------------------------------------------
// Screens' building blocks

/** A labelled input with its error line (filled from a problem's `errors`). */
function field(name, label, attrs = {}, hint = null) {
  const { tag = 'input', options = [], id = `f-${name}`, ...rest } = attrs;
  const control = tag === 'input'
    ? h('input', { id, name, type: 'text', ...rest })
    : h(tag, { id, name, ...rest }, options);
  control.setAttribute('aria-describedby', `${id}-error${hint ? ` ${id}-hint` : ''}`);
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    hint && h('span', { class: 'hint', id: `${id}-hint` }, hint),
    control,
    h('p', { class: 'field-error', id: `${id}-error` }));
}

/**
 * Submits `form` through `action(values)`. Empty `required` fields are named before any request
 * (a time or a number can not be sent empty); everything else is the server's to judge, and its
 * problem's `errors` show beside each named field (the rest in one alert above the form). The
 * first invalid field takes the focus.
 */
function handle(form, action, required = []) {
  const alert = h('div', { class: 'alert', role: 'alert', tabindex: '-1', hidden: true });
  form.prepend(alert);
  form.noValidate = true;
  form.addEventListener('submit', async (submitted) => {
    submitted.preventDefault();
    for (const error of form.querySelectorAll('.field-error')) error.textContent = '';
    for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
    alert.hidden = true;
    clearError();
    const values = Object.fromEntries(new FormData(form));
    const missing = required.filter((name) => !String(values[name] ?? '').trim());
    if (missing.length) {
      showErrors(form, alert, null, missing.map((name) => ({ field: name, message: 'required' })));
      return;
    }
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await action(values);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401 && me) return toLogin();
      showErrors(form, alert, error, error.errors);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function showErrors(form, alert, error, errors) {
  const unplaced = [];
  for (const { field: name, message } of errors) {
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input) {
      unplaced.push(`${name}: ${message}`);
      continue;
    }
    input.setAttribute('aria-invalid', 'true');
    document.getElementById(`${input.id}-error`).textContent = sentence(humane(message));
  }
  const first = form.querySelector('[aria-invalid="true"]'); // in reading order
  if (!errors.length || unplaced.length) {
    alert.replaceChildren(h('p', {}, errors.length ? 'Please check the form.' : error.readable),
      unplaced.map((text) => h('p', {}, sentence(text))));
    alert.hidden = false;
  }
  (first ?? alert).focus();
}

/** A failed screen: what happened, and a way forward (never a blank page or endless loading). */
function failure(error, retry) {
  if (error.status === 401) {
    toLogin();
    return h('p', {}, 'Please log in.');
  }
  const box = h('div', { class: 'alert', role: 'alert' },
    h('p', {}, error.status === 404 ? 'This page does not exist (anymore).' : error.readable));
  if (error.status !== 404 && error.status !== 403) {
    box.append(h('p', {}, h('button', { type: 'button', onclick: retry }, 'Try again')));
  }
  box.append(h('p', {}, h('a', { href: '#/' }, 'Back to the events')));
  return box;
}

/** A button that runs `action` once per click, disabled meanwhile, showing failures in place. */
function actionButton(label, action, attrs = {}) {
  const button = h('button', { type: 'button', ...attrs }, label);
  button.addEventListener('click', async () => {
    button.disabled = true;
    clearError();
    try {
      await action();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) return toLogin();
      flash(error.readable, 'error');
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/**
 * A keyset-paged list filling `container`: `first()` loads the first page (and returns its items),
 * "More" each next one.
 * `status` shows the empty state or a failure (with a retry), `controls` holds "More".
 */
function pagedList(container, load, renderItem, empty) {
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'More');
  const status = h('div');
  let cursor = null;
  const next = async () => {
    more.disabled = true;
    try {
      const page = await load(cursor);
      container.append(...page.items.map(renderItem));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.replaceChildren(container.children.length ? '' : h('div', { class: 'empty' }, empty));
      return page.items;
    } catch (error) {
      status.replaceChildren(failure(error, next));
      return [];
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', async () => {
    const before = container.children.length;
    await next();
    // The focus goes to the first item the page added ("More" may have just disappeared).
    const added = container.children[before];
    if (added) (added.querySelector('a, button') ?? added).focus();
  });
  return { status, controls: h('div', { class: 'actions' }, more), first: next };
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}

// ---------------------------------------------------------------------------------------------
// Screens: each returns the content of <main>, and throws an ApiError it could not recover from.

/** What the list shows: `upcoming` (earliest first), `past` (newest first) or `cancelled`. */
const SHOWN = {
  upcoming: { title: 'Upcoming events', api: { when: 'upcoming' }, none: 'No upcoming events match.' },
  past: { title: 'Past events', api: { when: 'past' }, none: 'No past events match.' },
  cancelled: { title: 'Cancelled events', api: { status: 'cancelled' }, none: 'No cancelled events match.' },
};

async function browse(params) {
  const filters = {
    q: params.get('q') ?? '',
    from: params.get('from') ?? '', to: params.get('to') ?? '',
    location: params.get('location') ?? '', category: params.get('category') ?? '',
    show: SHOWN[params.get('show')] ? params.get('show') : 'upcoming',
  };
  const shown = SHOWN[filters.show];
  const form = h('form', { class: 'filters card', role: 'search', 'aria-label': 'Filter events' },
    h('div', { class: 'wide' }, field('q', 'Search', { type: 'search', value: filters.q, placeholder: 'Title, place, topic…' })),
    field('from', 'From', { type: 'date', value: filters.from }),
    field('to', 'To', { type: 'date', value: filters.to }),
    field('location', 'Location', { value: filters.location }),
    field('category', 'Category', { value: filters.category }),
    field('show', 'Show', {
      tag: 'select',
      options: [['upcoming', 'Upcoming'], ['past', 'Past'], ['cancelled', 'Cancelled']].map(([value, label]) =>
        h('option', { value, selected: filters.show === value }, label)),
    }),
    h('button', { type: 'submit' }, 'Apply'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    const error = form.querySelector('#f-to-error');
    error.textContent = '';
    form.querySelector('#f-to').removeAttribute('aria-invalid');
    if (v.from && v.to && v.from > v.to) {
      error.textContent = 'To must not be before From.';
      form.querySelector('#f-to').setAttribute('aria-invalid', 'true');
      form.querySelector('#f-to').focus();
      return;
    }
    location.hash = `#/${query({ ...v, show: v.show === 'upcoming' ? '' : v.show })}`;
  });
  const apiFilters = {
    from: filters.from && new Date(`${filters.from}T00:00`).toISOString(),
    to: filters.to && new Date(`${filters.to}T23:59:59`).toISOString(),
    q: filters.q, location: filters.location, category: filters.category, ...shown.api,
  };
  const list = h('ul', { class: 'cards', 'aria-label': 'Events' });
  const paged = pagedList(list,
    (cursor) => api('GET', `/api/events${query({ ...apiFilters, limit: 20, cursor })}`),
    eventCard,
    filters.show === 'upcoming'
      ? [h('p', {}, shown.none), me && h('p', {}, h('a', { href: '#/events/new' }, 'Create an event'))]
      : shown.none);
  await paged.first();
  const filtered = ['q', 'from', 'to', 'location', 'category'].some((name) => filters[name]);
  return h('section', {}, !me && filters.show === 'upcoming' && !filtered && welcome(),
    h('h1', {}, shown.title), form, list, paged.status, paged.controls);
}

/** What a visitor sees first: what rsvp is, how it works, and the way in. */
function welcome() {
  return h('div', { class: 'welcome' },
    h('p', { class: 'tagline' }, 'Find something worth showing up for, and keep your seat.'),
    h('p', { class: 'lead' }, 'rsvp lists talks, meetups and workshops that people organise. Sign up in one ',
      'click; when an event is full you join its waitlist, and the first seat that frees up is yours — ',
      'we tell you when it is.'),
    h('ol', { class: 'steps', 'aria-label': 'How it works' },
      h('li', {}, h('strong', {}, 'Find an event'), 'Browse the list below or search by name, place or topic.'),
      h('li', {}, h('strong', {}, 'Take a seat'), 'With a free account, one click gets you a seat — or a place in line.'),
      h('li', {}, h('strong', {}, 'Host your own'), 'Publish an event in a minute, set its seats, and see who is coming.')),
    h('p', { class: 'actions' },
      h('a', { class: 'button', href: '#/register' }, 'Create a free account'),
      h('a', { href: '#/login' }, 'I have an account: log in')));
}

/** An organiser's page: their upcoming events, then their past ones (newest first). */
async function organiserPage(params, id) {
  const sections = await Promise.all(['upcoming', 'past'].map(async (show) => {
    const list = h('ul', { class: 'cards', 'aria-label': SHOWN[show].title });
    const paged = pagedList(list,
      (cursor) => api('GET', `/api/events${query({ organizer_id: id, ...SHOWN[show].api, limit: 10, cursor })}`),
      eventCard, show === 'upcoming' ? 'Nothing coming up.' : 'No past events.');
    const items = await paged.first();
    return { show, list, paged, items };
  }));
  // Their name, from one of their events (a profile needs a login; an event does not).
  const any = sections.flatMap((s) => s.items ?? []).find((e) => e.organizer?.name);
  const name = any?.organizer.name ?? 'This organiser';
  return h('section', {}, h('h1', {}, `Events by ${name}`),
    sections.map(({ show, list, paged }) => h('section', { 'aria-labelledby': `org-${show}` },
      h('h2', { id: `org-${show}` }, show === 'upcoming' ? 'Upcoming' : 'Past'),
      list, paged.status, paged.controls)));
}

function eventCard(event) {
  const full = event.status === 'scheduled' && event.seats_taken >= event.capacity;
  const left = event.capacity - event.seats_taken;
  const where = [event.location, event.category].filter(Boolean).join(' · ');
  return h('li', { class: 'card event-card' },
    dateLeaf(event),
    h('div', {},
      h('h2', { dir: 'auto' }, h('a', { href: `#/events/${event.id}` }, event.title),
        event.status === 'cancelled' && h('span', { class: 'badge cancelled' }, 'Cancelled'),
        full && h('span', { class: 'badge full' }, 'Full')),
      h('p', { class: 'meta' }, when(event)),
      where && h('p', { class: 'meta', dir: 'auto' }, where),
      h('p', { class: 'meta' },
        event.status === 'scheduled' && !full && h('span', { class: left <= 3 ? 'left few' : 'left' },
          left === 1 ? '1 seat left' : `${left} seats left`), event.status === 'scheduled' && !full && ' · ',
        seats(event), ' · by ', event.organizer?.name ?? 'a former member')));
}

/** The day the event starts at its venue, as a calendar leaf (the line beside says it in words). */
function dateLeaf(event) {
  const timeZone = shownZone(event.time_zone || 'UTC');
  const start = new Date(event.starts_at);
  const part = (options) => new Intl.DateTimeFormat(undefined, { ...options, timeZone }).format(start);
  return h('div', { class: 'leaf', 'aria-hidden': 'true' },
    h('span', { class: 'leaf-month' }, part({ month: 'short' })),
    h('span', { class: 'leaf-day' }, part({ day: 'numeric' })),
    h('span', { class: 'leaf-weekday' }, part({ weekday: 'short' })));
}

/** The viewer's registration for an event, from "my registrations". */
async function myRegistration(eventId) {
  let cursor = null;
  for (let pages = 0; pages < 50; pages += 1) {
    const page = await api('GET', `/api/users/me/registrations${query({ limit: 100, cursor })}`);
    const found = page.items.find((r) => (r.event?.id ?? r.event_id) === eventId);
    if (found || !page.next_cursor) return found ?? null;
    cursor = page.next_cursor;
  }
  return null;
}

async function eventPage(params, id) {
  const [event, viewer] = await Promise.all([api('GET', `/api/events/${encodeURIComponent(id)}`), whoAmI()]);
  const mine = viewer ? await myRegistration(event.id) : null;
  const promoted = mine?.status === 'confirmed' && (await promotedEvents()).has(event.id);
  const started = new Date(event.starts_at) <= new Date();
  const manages = viewer && (viewer.id === event.organizer?.id || viewer.role === 'admin');
  const rerender = () => route();

  const actions = h('div', { class: 'actions' });
  if (event.status === 'cancelled') {
    actions.append(h('p', { class: 'state' }, 'This event was cancelled.'));
  } else if (!viewer) {
    actions.append(h('a', { class: 'button', href: `#/login${query({ next: location.hash })}` }, 'Log in to sign up'));
  } else if (!mine && !started) {
    const full = event.seats_taken >= event.capacity;
    if (full) actions.append(h('p', { class: 'hint' }, 'The event is full: signing up puts you on its waitlist.'));
    actions.append(actionButton(full ? 'Join the waitlist' : 'Sign up', async () => {
      const registration = await api('POST', `/api/events/${event.id}/registrations`);
      flash(registration.status === 'confirmed'
        ? 'You are signed up: you have a seat.'
        : `The event is full: you are on the waitlist, at position ${registration.position}.`);
      await rerender();
      focusMessage();
    }));
  } else if (mine) {
    actions.append(actionButton(mine.status === 'confirmed' ? 'Give up my seat' : 'Leave the waitlist', async () => {
      const othersWait = mine.status === 'confirmed' && event.waitlist_length > 0;
      if (othersWait && !confirm('Give up your seat? The first person on the waitlist gets it, and you would have to join the waitlist to come back.')) return;
      await api('DELETE', `/api/events/${event.id}/registrations/me`);
      flash('You are no longer registered for this event.');
      await rerender();
      focusMessage();
    }, { class: 'secondary' }));
  }
  if (manages && event.status === 'scheduled') {
    actions.append(h('a', { class: 'button secondary', href: `#/events/${event.id}/edit` }, 'Edit'),
      actionButton('Cancel event', async () => {
        if (!confirm(`Cancel “${event.title}”? Everyone registered will see it cancelled.`)) return;
        await api('DELETE', `/api/events/${event.id}`);
        flash('The event was cancelled.');
        await rerender();
        focusMessage();
      }, { class: 'danger' }));
  }

  const view = h('article', {},
    h('h1', { dir: 'auto' }, event.title, event.status === 'cancelled' && h('span', { class: 'badge cancelled' }, 'Cancelled')),
    h('div', { class: 'card' },
      h('p', { class: 'meta' }, h('time', { datetime: event.starts_at }, when(event)),
        ` (local time in ${place(shownZone(event.time_zone))})`),
      sameClock(event) ? null : h('p', { class: 'hint', 'data-viewer-time': '' },
        `Your time (${zone}): ${when(event, zone)}`),
      (event.location || event.category) &&
        h('p', { class: 'meta', dir: 'auto' }, linked([event.location, event.category].filter(Boolean).join(' · '))),
      h('p', { class: 'meta' }, 'Organised by ', event.organizer?.name
        ? h('a', { href: `#/organisers/${event.organizer.id}` }, event.organizer.name)
        : 'a former member'),
      h('p', { class: 'meta', 'data-seats': '' }, seats(event)),
      viewer && stateOf(mine, promoted, event),
      event.description && h('p', { class: 'description', dir: 'auto' }, linked(event.description)),
      h('p', { class: 'links' },
        h('a', { href: `/api/events/${event.id}/calendar.ics`, download: `event-${event.id}.ics` }, 'Add to calendar'),
        ' · ',
        h('a', { href: `/events/${event.id}` }, 'Link to share'))),
    actions);
  if (manages) view.append(await attendees(event));
  return view;
}

async function attendees(event) {
  const list = h('tbody');
  const row = (r) => h('tr', {},
    h('td', { 'data-label': 'Name' }, r.user?.name ?? 'a former member'),
    h('td', { 'data-label': 'Status' }, r.status === 'confirmed' ? 'Confirmed' : `Waitlisted${r.position ? ` (#${r.position})` : ''}`),
    h('td', { 'data-label': 'Since' }, dateTime.format(new Date(r.created_at))));
  const paged = pagedList(list,
    (cursor) => api('GET', `/api/events/${event.id}/registrations${query({ limit: 50, cursor })}`),
    row, 'Nobody has signed up yet.');
  await paged.first();
  return h('section', { 'aria-labelledby': 'attendees' },
    h('h2', { id: 'attendees' }, 'Attendees'),
    h('table', { class: 'responsive' },
      h('thead', {}, h('tr', {}, ['Name', 'Status', 'Since'].map((c) => h('th', { scope: 'col' }, c)))),
      list),
    paged.status, paged.controls);
}

function eventForm(event) {
  const form = h('form', { class: 'stack card' },
    field('title', 'Title', { value: event?.title ?? '', autocomplete: 'off' }),
    field('description', 'Description', { tag: 'textarea' }),
    h('div', { class: 'field row' },
      field('location', 'Location', { value: event?.location ?? '' }),
      field('category', 'Category', { value: event?.category ?? '' }, 'Tech, Music, …')),
    field('time_zone', 'Time zone of the venue', {
      value: event?.time_zone ?? zone, list: 'zones', autocomplete: 'off', spellcheck: 'false',
    }, 'Starts and Ends are local times there.'),
    h('datalist', { id: 'zones' }, ZONES.map((name) => h('option', { value: name }))),
    h('div', { class: 'field row' },
      field('starts_at', 'Starts', { type: 'datetime-local', value: event ? localInput(event.starts_at, shownZone(event.time_zone)) : '' }),
      field('ends_at', 'Ends', { type: 'datetime-local', value: event ? localInput(event.ends_at, shownZone(event.time_zone)) : '' })),
    field('capacity', 'Seats', { type: 'number', min: 1, max: 100000, inputmode: 'numeric', value: event?.capacity ?? '' },
      event ? 'More seats promote people from the waitlist.' : null),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, event ? 'Save changes' : 'Publish event')));
  form.querySelector('textarea').value = event?.description ?? '';
  return form;
}

const EVENT_REQUIRED = ['title', 'starts_at', 'ends_at', 'capacity'];

/** Whether this browser can tell the time in `timeZone`. */
function knownZone(timeZone) {
  try {
    new Intl.DateTimeFormat('en', { timeZone });
    return timeZone !== '';
  } catch {
    return false;
  }
}

/** `timeZone` when this browser knows it, else UTC (a zone newer than the browser's data). */
function shownZone(timeZone) {
  return knownZone(timeZone) ? timeZone : 'UTC';
}

/**
 * The form's values as the API takes them: the local times at the venue as UTC instants. A time
 * the venue's clocks skip or show twice (summer time) is refused here, never shifted silently.
 * `before` (editing): the form's first values; a time and a zone left as they were are not sent,
 * so saving a new title neither moves the event nor tells its attendees it changed.
 */
function eventBody(values, before = null) {
  const timeZone = values.time_zone.trim();
  const errors = [];
  const known = knownZone(timeZone);
  if (!known) errors.push({ field: 'time_zone', message: 'choose a time zone from the list, such as Europe/Berlin' });
  const zoneKept = before !== null && timeZone === before.time_zone;
  const time = (name) => {
    const wall = values[name];
    if (!wall || !known) return wall;
    const at = instantsAt(wall, timeZone);
    const clock = wall.slice(11);
    if (at.length === 0) {
      errors.push({ field: name, message: `${clock} does not exist on that day in ${timeZone}: the clocks skip that hour. Choose another time` });
    } else if (at.length > 1) {
      errors.push({ field: name, message: `${clock} happens twice on that night in ${timeZone}: the clocks go back. Choose a time outside that hour` });
    }
    return at.length === 1 ? new Date(at[0]).toISOString() : wall;
  };
  const capacity = values.capacity === '' ? null : Number(values.capacity);
  if (capacity !== null && !Number.isInteger(capacity)) {
    errors.push({ field: 'capacity', message: 'must be a whole number of seats' });
  }
  const body = {
    title: values.title,
    description: values.description || null,
    location: values.location || null,
    category: values.category || null,
    capacity,
  };
  if (!zoneKept) body.time_zone = timeZone;
  for (const name of ['starts_at', 'ends_at']) {
    if (!(zoneKept && values[name] === before[name])) body[name] = time(name);
  }
  if (errors.length) throw new ApiError(422, { title: 'Please check the form.', errors });
  return body;
}

/** Whether the viewer's clock shows the same times as the venue's. */
function sameClock(event) {
  const venue = shownZone(event.time_zone || 'UTC');
  return [event.starts_at, event.ends_at].every((iso) =>
    wallTime(Date.parse(iso), zone) === wallTime(Date.parse(iso), venue));
}

async function createEvent() {
  if (!(await whoAmI())) return toLogin();
  return h('section', {}, h('h1', {}, 'New event'),
    handle(eventForm(null), async (values) => {
      const event = await api('POST', '/api/events', eventBody(values));
      flash('Your event is published.');
      location.hash = `#/events/${event.id}`;
    }, EVENT_REQUIRED));
}

async function editEvent(params, id) {
  const viewer = await whoAmI();
  if (!viewer) return toLogin();
  const event = await api('GET', `/api/events/${encodeURIComponent(id)}`);
  if (viewer.id !== event.organizer?.id && viewer.role !== 'admin') {
    // Said before anything is typed, not after.
    return h('section', {}, h('h1', {}, 'Edit ', event.title),
      h('div', { class: 'alert', role: 'alert' },
        h('p', {}, 'Only its organiser (or an admin) can change this event.'),
        h('p', {}, h('a', { href: `#/events/${event.id}` }, 'Back to the event'))));
  }
  const form = eventForm(event);
  const before = Object.fromEntries(new FormData(form));
  return h('section', {}, h('h1', {}, 'Edit ', event.title),
    handle(form, async (values) => {
      await api('PATCH', `/api/events/${event.id}`, eventBody(values, before));
      flash('Your changes are saved.');
      location.hash = `#/events/${event.id}`;
    }, EVENT_REQUIRED));
}

/** Withdraws from one of "my registrations"; its accessible name says which event. */
function withdrawButton(registration) {
  const { event } = registration;
  const label = registration.status === 'confirmed' ? 'Give up my seat' : 'Leave the waitlist';
  return actionButton(label, async () => {
    await api('DELETE', `/api/events/${event.id}/registrations/me`);
    flash(`You are no longer registered for ${event.title}.`);
    await route();
    focusMessage();
  }, { class: 'secondary', 'aria-label': `${label}: ${event.title}` });
}

async function myRegistrations() {
  if (!(await whoAmI())) return toLogin();
  const promoted = await promotedEvents();
  const list = h('ul', { class: 'cards', 'aria-label': 'My registrations' });
  const item = (r) => h('li', { class: 'card' },
    h('h2', {}, h('a', { href: `#/events/${r.event.id}` }, r.event.title),
      r.event.status === 'cancelled' && h('span', { class: 'badge cancelled' }, 'Cancelled')),
    h('p', { class: 'meta' }, when(r.event)),
    stateOf(r, promoted.has(r.event.id)),
    r.event.status === 'scheduled' && h('div', { class: 'actions' }, withdrawButton(r)));
  const paged = pagedList(list,
    (cursor) => api('GET', `/api/users/me/registrations${query({ limit: 20, cursor })}`),
    item, 'You have not signed up for anything yet.');
  await paged.first();
  return h('section', {}, h('h1', {}, 'My registrations'), list, paged.status, paged.controls,
    calendarFeed());
}

/** A secret address for a calendar app: shown once when made; a new one stops the old. */
function calendarFeed() {
  const shown = h('div', { class: 'stack' });
  const make = actionButton('Get a calendar link', async () => {
    const feed = await api('POST', '/api/users/me/calendar-feed');
    const address = h('input', { id: 'feed-url', type: 'text', readonly: true, value: feed.url });
    shown.replaceChildren(
      h('label', { for: 'feed-url' }, 'Your calendar link (subscribe to it in your calendar app)'),
      address,
      h('p', { class: 'hint' }, 'Anyone with this link sees your events. It is shown once: a new link stops this one.'));
    address.focus();
    address.select();
  }, { class: 'secondary' });
  const stop = actionButton('Stop my calendar link', async () => {
    try {
      await api('DELETE', '/api/users/me/calendar-feed');
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
    }
    shown.replaceChildren(h('p', {}, 'Your calendar link no longer works.'));
  }, { class: 'secondary' });
  return h('section', { 'aria-labelledby': 'feed-title' },
    h('h2', { id: 'feed-title' }, 'In your calendar'),
    h('p', {}, 'Your registrations as a calendar your calendar app keeps up to date (waitlist places as tentative).'),
    h('div', { class: 'actions' }, make, stop), shown);
}

function login(params) {
  const next = params.get('next') || '#/';
  return h('section', {}, h('h1', {}, 'Log in'),
    handle(h('form', { class: 'stack card' },
      field('email', 'Email', { type: 'email', autocomplete: 'username' }),
      field('password', 'Password', { type: 'password', autocomplete: 'current-password' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Log in'))),
    async ({ email, password }) => {
      const user = await logIn(email, password);
      flash(`Welcome back, ${user.name}.`);
      go(next);
    }, ['email', 'password']), // an empty form is not a wrong password
    h('p', {}, h('a', { href: '#/forgot' }, 'Forgot your password?')),
    h('p', {}, 'New here? ', h('a', { href: `#/register${query({ next: params.get('next') })}` }, 'Create an account')));
}

function forgotPassword() {
  const sent = h('p', { class: 'state confirmed', role: 'status', hidden: true });
  return h('section', {}, h('h1', {}, 'Forgot your password?'),
    h('p', {}, 'Give the email of your account: we mail you a link to choose a new password. It works once, for 30 minutes.'),
    handle(h('form', { class: 'stack card' },
      field('email', 'Email', { type: 'email', autocomplete: 'username' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Mail me a link'))),
    async ({ email }) => {
      const answer = await api('POST', '/api/auth/password-reset', { email });
      sent.textContent = answer.detail;
      sent.hidden = false;
      sent.setAttribute('tabindex', '-1');
      sent.focus();
    }, ['email']),
    sent,
    h('p', {}, h('a', { href: '#/login' }, 'Back to log in')));
}

function resetPassword(params) {
  const token = params.get('token') ?? '';
  if (!token) {
    return h('section', {}, h('h1', {}, 'Choose a new password'),
      h('p', { class: 'alert', role: 'alert' }, 'This link has no token. Open the link of the mail again, or ask for a new one.'),
      h('p', {}, h('a', { href: '#/forgot' }, 'Ask for a new link')));
  }
  return h('section', {}, h('h1', {}, 'Choose a new password'),
    handle(h('form', { class: 'stack card' },
      field('password', 'New password', { type: 'password', autocomplete: 'new-password' }, '8 to 128 characters.'),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Set the new password'))),
    async ({ password }) => {
      await api('POST', '/api/auth/password-reset/confirm', { token, password });
      session.clear();
      me = null;
      flash('Your password is changed. Log in with it.');
      go('#/login');
    }, ['password']),
    h('p', {}, h('a', { href: '#/forgot' }, 'Ask for a new link')));
}

const KINDS = [
  ['promotion', 'A seat for me from a waitlist'],
  ['cancellation', 'An event I signed up for is cancelled'],
  ['changes', 'An event I signed up for changes its time or place'],
  ['reminders', 'A reminder the day before an event'],
];

async function notifications() {
  if (!(await whoAmI())) return toLogin();
  const list = h('ul', { class: 'cards', 'aria-label': 'Notifications' });
  const item = (n) => {
    const unread = !n.read_at;
    const card = h('li', { class: unread ? 'card unread' : 'card' },
      h('h2', {}, n.event_id ? h('a', { href: `#/events/${n.event_id}` }, n.title) : n.title,
        unread && h('span', { class: 'badge' }, 'New')),
      h('p', { class: 'meta' }, dateTime.format(new Date(n.created_at))),
      h('p', { dir: 'auto' }, n.body));
    if (unread) {
      card.append(h('div', { class: 'actions' }, actionButton('Mark as read', async () => {
        await api('PATCH', `/api/users/me/notifications/${n.id}`, { read: true });
        unreadCount = Math.max(0, unreadCount - 1);
        renderNav();
        card.classList.remove('unread');
        card.querySelector('.badge')?.remove();
        card.querySelector('.actions')?.remove();
        card.querySelector('h2').setAttribute('tabindex', '-1');
        card.querySelector('h2').focus();
      }, { class: 'secondary' })));
    }
    return card;
  };
  const paged = pagedList(list,
    async (cursor) => {
      const page = await api('GET', `/api/users/me/notifications${query({ limit: 20, cursor })}`);
      unreadCount = page.unread;
      return page;
    },
    item, 'Nothing yet: you are told here when you get a seat, or when an event you signed up for changes.');
  await paged.first();
  const settings = await api('GET', '/api/users/me/notification-settings');
  const form = handle(h('form', { class: 'stack card', 'aria-label': 'Mail settings' },
    h('fieldset', {}, h('legend', {}, 'Mail me when…'),
      KINDS.map(([name, label]) => h('div', { class: 'check' },
        h('input', { type: 'checkbox', id: `k-${name}`, name, checked: settings.email[name] ? true : null }),
        h('label', { for: `k-${name}` }, label)))),
    h('p', { class: 'hint' }, 'You always see them here; password-reset mail always comes.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save'))),
  async (values) => {
    const email = Object.fromEntries(KINDS.map(([name]) => [name, values[name] === 'on']));
    await api('PUT', '/api/users/me/notification-settings', { email });
    flash('Your mail settings are saved.');
  });
  return h('section', {}, h('h1', {}, 'Notifications'), list, paged.status, paged.controls,
    h('h2', {}, 'Mail'), form);
}

function register(params) {
  return h('section', {}, h('h1', {}, 'Create an account'),
    handle(h('form', { class: 'stack card' },
      field('name', 'Name', { autocomplete: 'name' }),
      field('email', 'Email', { type: 'email', autocomplete: 'email' }),
      field('password', 'Password', { type: 'password', autocomplete: 'new-password' }, '8 to 128 characters.'),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create account'))),
    async ({ name, email, password }) => {
      await api('POST', '/api/auth/register', { name, email, password });
      const user = await logIn(email, password);
      flash(`Welcome, ${user.name}. You are logged in.`);
      go(params.get('next') || '#/');
    }),
    h('p', {}, 'Already have an account? ', h('a', { href: '#/login' }, 'Log in')));
}

async function account() {
  const user = await whoAmI();
  if (!user) return toLogin();
  return h('section', {}, h('h1', {}, 'Your account'),
    h('div', { class: 'card' },
      h('p', {}, h('strong', {}, 'Email: '), user.email),
      h('p', {}, h('strong', {}, 'Member since: '), dateTime.format(new Date(user.created_at))),
      user.role === 'admin' && h('p', {}, h('strong', {}, 'Role: '), 'administrator')),
    h('h2', {}, 'Name'),
    handle(h('form', { class: 'stack card', 'aria-label': 'Change name' },
      field('name', 'Name', { value: user.name, autocomplete: 'name' }),
      field('current_password', 'Current password', { type: 'password', autocomplete: 'current-password', id: 'f-name-current' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Change name'))),
    async ({ name, current_password }) => {
      me = await api('PATCH', '/api/users/me', { name, current_password });
      flash('Your name is changed.');
      route();
    }),
    h('h2', {}, 'Password'),
    handle(h('form', { class: 'stack card', 'aria-label': 'Change password' },
      field('current_password', 'Current password', { type: 'password', autocomplete: 'current-password', id: 'f-pw-current' }),
      field('password', 'New password', { type: 'password', autocomplete: 'new-password' }, '8 to 128 characters.'),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Change password'))),
    async ({ current_password, password }) => {
      await api('PATCH', '/api/users/me', { password, current_password });
      // A new password ends every session, this one's too: log in again with it.
      await logIn(user.email, password);
      flash('Your password is changed.');
      route();
    }),
    h('h2', {}, 'Delete account'),
    handle(h('form', { class: 'stack card', 'aria-label': 'Delete account' },
      h('p', {}, 'Your registrations are removed and the events you organise are cancelled. This can not be undone.'),
      field('current_password', 'Current password', { type: 'password', autocomplete: 'current-password', id: 'f-delete-current' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'danger' }, 'Delete my account'))),
    async ({ current_password }) => {
      if (!confirm('Delete your account for good?')) return;
      await api('DELETE', '/api/users/me', { current_password });
      session.clear();
      flash('Your account is deleted.');
      go('#/');
    }));
}

async function adminUsers(params) {
  const user = await whoAmI();
  if (!user) return toLogin();
  if (user.role !== 'admin') {
    return h('section', {}, h('h1', {}, 'Users'), h('p', { class: 'alert', role: 'alert' }, 'Only administrators can see this page.'));
  }
  const email = params.get('email') ?? '';
  const search = h('form', { class: 'inline card', role: 'search', 'aria-label': 'Find a user' },
    field('email', 'Email', { type: 'email', value: email }, 'The whole address.'),
    h('button', { type: 'submit' }, 'Find'));
  search.noValidate = true; // our sentence, not the browser's bubble (or nothing at all)
  search.addEventListener('submit', (e) => {
    e.preventDefault();
    const wanted = new FormData(search).get('email').trim();
    const error = search.querySelector('#f-email-error');
    if (wanted && !/^[^@\s]+@[^@\s]+$/.test(wanted)) {
      error.textContent = 'Enter the whole address, such as name@example.org: part of one finds nobody.';
      search.querySelector('#f-email').setAttribute('aria-invalid', 'true');
      search.querySelector('#f-email').focus();
      return;
    }
    location.hash = `#/admin/users${query({ email: wanted })}`;
  });
  const list = h('tbody');
  const row = (u) => h('tr', {},
    h('td', { 'data-label': 'Email' }, u.email),
    h('td', { 'data-label': 'Name' }, u.name),
    h('td', { 'data-label': 'Role' }, u.role),
    h('td', {}, u.id === user.id ? 'you' : actionButton(`Delete ${u.email}`, async () => {
      if (!confirm(`Delete the account ${u.email}? Their registrations are removed and their events cancelled.`)) return;
      await api('DELETE', `/api/users/${u.id}`);
      flash(`${u.email} is deleted.`);
      await route();
      focusMessage();
    }, { class: 'danger' })));
  const paged = pagedList(list,
    (cursor) => api('GET', `/api/users${query({ email, limit: 50, cursor })}`),
    row, email ? 'No account has this email.' : 'No accounts yet.');
  await paged.first();
  return h('section', {}, h('h1', {}, 'Users'), search,
    h('table', { class: 'responsive' },
      h('thead', {}, h('tr', {}, ['Email', 'Name', 'Role', 'Action'].map((c) => h('th', { scope: 'col' }, c)))),
      list),
    paged.status, paged.controls);
}

// ---------------------------------------------------------------------------------------------
// Navigation

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/** Sends to the login screen, which comes back here afterwards. */
function toLogin() {
  const here = location.hash.startsWith('#/login') ? '#/' : location.hash || '#/';
  session.clear();
  flash('Please log in to continue.');
  go(`#/login${query({ next: here })}`);
  return h('p', {}, 'Please log in.');
}

async function logOut() {
  const current = session.get();
  session.clear();
  if (current) {
    try {
      await send('POST', '/api/auth/logout', { refresh_token: current.refresh });
    } catch {
      // the session is gone here either way
    }
  }
  flash('You are logged out.');
  go('#/');
}

const ROUTES = [
  [/^\/?$/, browse, 'Events'],
  [/^\/events\/new$/, createEvent, 'New event'],
  [/^\/events\/([0-9a-fA-F-]{36})$/, eventPage, 'Event'],
  [/^\/events\/([0-9a-fA-F-]{36})\/edit$/, editEvent, 'Edit event'],
  [/^\/organisers\/([0-9a-fA-F-]{36})$/, organiserPage, 'Organiser'],
  [/^\/me\/registrations$/, myRegistrations, 'My registrations'],
  [/^\/account$/, account, 'Account'],
  [/^\/admin\/users$/, adminUsers, 'Users'],
  [/^\/login$/, login, 'Log in'],
  [/^\/register$/, register, 'Create an account'],
  [/^\/forgot$/, forgotPassword, 'Forgot your password?'],
  [/^\/reset$/, resetPassword, 'Choose a new password'],
  [/^\/notifications$/, notifications, 'Notifications'],
];

/** Unread notifications of the person logged in, as the header shows them. */
let unreadCount = 0;

async function refreshUnread() {
  if (!me) {
    unreadCount = 0;
    return;
  }
  try {
    unreadCount = (await api('GET', '/api/users/me/notifications?limit=1')).unread;
  } catch {
    // the count waits for the next screen
  }
}

function renderNav() {
  const link = (href, text) => h('li', {}, h('a', { href, 'aria-current': location.hash.split('?')[0] === href ? 'page' : null }, text));
  const nav = document.getElementById('nav');
  nav.replaceChildren(link('#/', 'Events'));
  if (me) {
    const bell = link('#/notifications', 'Notifications');
    if (unreadCount) {
      // Seen as a count beside the word, heard as "Notifications 2 unread".
      bell.firstChild.append(h('span', { class: 'count' }, unreadCount),
        h('span', { class: 'sr-only' }, ' unread'));
    }
    nav.append(link('#/events/new', 'New event'), link('#/me/registrations', 'My registrations'),
      bell, link('#/account', me.name));
    if (me.role === 'admin') nav.append(link('#/admin/users', 'Users'));
    nav.append(h('li', {}, h('button', { type: 'button', class: 'link', onclick: logOut }, 'Log out')));
  } else {
    const signUp = link('#/register', 'Sign up');
    signUp.firstChild.classList.add('button');
    nav.append(link('#/login', 'Log in'), signUp);
  }
}

let rendering = 0;
let lastPath = null;

/** Renders the screen the address names. */
async function route() {
  const ticket = ++rendering;
  const [path, search] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(search ?? '');
  const match = ROUTES.map(([pattern, view, title]) => [path.match(pattern), view, title]).find(([m]) => m);
  // The first screen leaves the focus at the start of the page (the header's links come first);
  // a new screen afterwards focuses its heading.
  const moved = lastPath !== null && path !== lastPath;
  lastPath = path;
  if (flashBox.dataset.keep === 'yes') flashBox.dataset.keep = 'no';
  else flashBox.textContent = '';
  flashBox.removeAttribute('tabindex');
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  main.setAttribute('aria-busy', 'true');
  let content;
  let title = 'Not found';
  try {
    await whoAmI();
    await refreshUnread();
    if (!match) throw new ApiError(404);
    const [found, view, name] = match;
    title = name;
    content = await view(params, ...found.slice(1));
  } catch (error) {
    if (!(error instanceof ApiError)) {
      console.error(error);
      error = new ApiError(500);
    }
    content = failure(error, route);
    // A tab says what went wrong, not the name of the screen that could not be shown.
    title = error.status === 404 ? 'Not found' : 'Something went wrong';
  }
  if (ticket !== rendering) return; // a newer navigation took over
  renderNav();
  main.replaceChildren(content);
  main.removeAttribute('aria-busy');
  const heading = main.querySelector('h1');
  document.title = `${heading?.textContent || title} · rsvp`;
  if (moved) {
    (heading ?? main).setAttribute('tabindex', '-1');
    (heading ?? main).focus();
  }
}

window.addEventListener('hashchange', route);
// Another tab logged out or in (not merely refreshed its tokens): follow it.
window.addEventListener('storage', (e) => {
  if (e.key === SESSION && (e.oldValue === null) !== (e.newValue === null)) {
    me = null;
    route();
  }
});
route();
