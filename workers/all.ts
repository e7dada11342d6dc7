/** Gate, observer and API in one process: what `npm start` runs. */
import { runProcess } from '../src/process';

void runProcess(['gate', 'observer', 'api']);
