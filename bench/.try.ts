import { redis } from './lib';
import { contended } from './governed';
(async () => { console.log(await contended()); redis.disconnect(); })();
