// bench_ajv.js - events/s of ajv (2020-12, ajv-formats) on the same schema and event as
// bench_schema.c.  Usage: NODE_PATH=<dir with ajv> node bench_ajv.js SCHEMA EVENT [SECONDS]
const fs = require('fs');
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;
const [schemaPath, eventPath, secsArg] = process.argv.slice(2);
const secs = Number(secsArg || 2);
const ajv = new Ajv2020({ allErrors: false, strict: false });
addFormats(ajv);
const validate = ajv.compile(JSON.parse(fs.readFileSync(schemaPath, 'utf8')));
const text = JSON.stringify(JSON.parse(fs.readFileSync(eventPath, 'utf8')));
const event = JSON.parse(text);
if (!validate(event)) { console.error('not valid', validate.errors); process.exit(1); }
function run(fn) {
  let n = 0; const t0 = process.hrtime.bigint(); let t;
  do { for (let i = 0; i < 1000; i++) n += fn() ? 1 : 0; t = Number(process.hrtime.bigint() - t0) / 1e9; } while (t < secs);
  return n / t;
}
console.log(`ajv validate-only: ${run(() => validate(event)).toFixed(0)} events/s`);
console.log(`ajv parse+validate: ${run(() => validate(JSON.parse(text))).toFixed(0)} events/s`);
