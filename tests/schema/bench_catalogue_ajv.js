// bench_catalogue_ajv.js - events/s of ajv (2020-12, ajv-formats) on the catalogue schema of an
// event's type (with defs.json added) and the event's data, as bench_catalogue.c measures:
// validate-only and parse+validate (the whole event parsed each time).
// Usage: NODE_PATH=<dir with ajv> node bench_catalogue_ajv.js SCHEMAS_DIR EVENT [SECONDS]
const fs = require('fs');
const path = require('path');
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;
const [dir, eventPath, secsArg] = process.argv.slice(2);
const secs = Number(secsArg || 2);
const ajv = new Ajv2020({ allErrors: false, strict: false });
addFormats(ajv);
ajv.addSchema(JSON.parse(fs.readFileSync(path.join(dir, 'defs.json'), 'utf8')));
const text = JSON.stringify(JSON.parse(fs.readFileSync(eventPath, 'utf8')));
const event = JSON.parse(text);
const type = event.type.replace(/^pk\.gov\.emining\./, '');
const validate = ajv.compile(JSON.parse(fs.readFileSync(path.join(dir, type, '1.json'), 'utf8')));
if (!validate(event.data)) { console.error('not valid', validate.errors); process.exit(1); }
function run(fn) {
  let n = 0; const t0 = process.hrtime.bigint(); let t;
  do { for (let i = 0; i < 1000; i++) n += fn() ? 1 : 0; t = Number(process.hrtime.bigint() - t0) / 1e9; } while (t < secs);
  return n / t;
}
console.log(`ajv validate-only: ${run(() => validate(event.data)).toFixed(0)} events/s`);
console.log(`ajv parse+validate: ${run(() => validate(JSON.parse(text).data)).toFixed(0)} events/s`);
