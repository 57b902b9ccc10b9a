// The 3D orb: an icosphere whose vertices are pushed out by the audio's frequency bands
// (a Web Audio AnalyserNode read every frame), drawn with WebGL 1 and two small shaders.

const BANDS = 16;

const VERTEX = `
attribute vec3 position;
uniform mat4 projection;
uniform mat4 rotation;
uniform float bands[${BANDS}];
uniform float time;
uniform float level;
varying vec3 vNormal;
varying float vLift;
varying float vLevel;

void main() {
  // each vertex listens to the bands near its latitude, the seam wandering with time
  float lat = acos(clamp(position.y, -1.0, 1.0)) / 3.14159265;
  float wobble = 0.08 * sin(5.0 * atan(position.z, position.x) + time * 0.9);
  float u = clamp(lat + wobble, 0.0, 1.0) * float(${BANDS - 1});
  float lift = 0.0;
  float weight = 0.0;
  for (int i = 0; i < ${BANDS}; i++) {
    float w = exp(-0.8 * (u - float(i)) * (u - float(i)));
    lift += w * bands[i];
    weight += w;
  }
  lift /= weight;
  // ridges, so that the bands raise bumps rather than a smooth bulge
  lift *= 0.55 + 0.45 * sin(7.0 * position.x + time) * sin(6.0 * position.y) * sin(5.0 * position.z - time * 0.5);
  float idle = 0.025 * sin(3.0 * position.x + time * 1.3) * cos(4.0 * position.y - time);
  float r = 1.0 + 0.5 * lift + idle + 0.06 * level;
  vec4 p = rotation * vec4(position * r, 1.0);
  vNormal = normalize((rotation * vec4(position, 0.0)).xyz);
  vLift = lift;
  vLevel = level;
  gl_Position = projection * (p + vec4(0.0, 0.0, -4.6, 0.0));
}`;

const FRAGMENT = `
precision mediump float;
varying vec3 vNormal;
varying float vLift;
varying float vLevel;

void main() {
  vec3 light = normalize(vec3(0.5, 0.8, 0.9));
  float diffuse = max(dot(normalize(vNormal), light), 0.0);
  float rim = pow(1.0 - abs(vNormal.z), 2.0);
  vec3 calm = vec3(0.16, 0.32, 0.85);
  vec3 loud = vec3(0.95, 0.35, 0.85);
  vec3 base = mix(calm, loud, clamp(vLift * 1.6, 0.0, 1.0));
  vec3 color = base * (0.25 + 0.75 * diffuse) + rim * vec3(0.35, 0.7, 1.0) * (0.6 + vLevel);
  gl_FragColor = vec4(color, 1.0);
}`;

/** An icosahedron subdivided `depth` times, its vertices on the unit sphere. */
export function icosphere(depth) {
  const t = (1 + Math.sqrt(5)) / 2;
  const verts = [
    [-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
    [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1],
  ].map(unit);
  let faces = [
    [0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
    [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
    [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1],
  ];
  for (let d = 0; d < depth; d++) {
    const cache = new Map();
    const middle = (a, b) => {
      const key = a < b ? `${a}_${b}` : `${b}_${a}`;
      if (!cache.has(key)) {
        const [p, q] = [verts[a], verts[b]];
        verts.push(unit([(p[0] + q[0]) / 2, (p[1] + q[1]) / 2, (p[2] + q[2]) / 2]));
        cache.set(key, verts.length - 1);
      }
      return cache.get(key);
    };
    faces = faces.flatMap(([a, b, c]) => {
      const [ab, bc, ca] = [middle(a, b), middle(b, c), middle(c, a)];
      return [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]];
    });
  }
  return { positions: new Float32Array(verts.flat()), indices: new Uint16Array(faces.flat()) };
}

function unit([x, y, z]) {
  const n = Math.hypot(x, y, z);
  return [x / n, y / n, z / n];
}

function perspective(fovy, aspect, near, far) {
  const f = 1 / Math.tan(fovy / 2);
  const nf = 1 / (near - far);
  return new Float32Array([
    f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0,
  ]);
}

function rotation(ax, ay) {
  const [cx, sx, cy, sy] = [Math.cos(ax), Math.sin(ax), Math.cos(ay), Math.sin(ay)];
  // R = Rx(ax) * Ry(ay), column-major
  return new Float32Array([
    cy, sx * sy, -cx * sy, 0, 0, cx, sx, 0, sy, -sx * cy, cx * cy, 0, 0, 0, 0, 1,
  ]);
}

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
    throw new Error(`shader failed to compile: ${gl.getShaderInfoLog(shader)}`);
  }
  return shader;
}

/** The orb on `canvas`; call setAnalyser() once audio flows, start() to animate. */
export class Orb {
  constructor(canvas) {
    this.canvas = canvas;
    const gl = canvas.getContext("webgl", { antialias: true, preserveDrawingBuffer: true });
    if (!gl) throw new Error("WebGL is not available");
    this.gl = gl;
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
      throw new Error(`shaders failed to link: ${gl.getProgramInfoLog(program)}`);
    }
    gl.useProgram(program);
    const mesh = icosphere(4);
    this.count = mesh.indices.length;
    gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ARRAY_BUFFER, mesh.positions, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, mesh.indices, gl.STATIC_DRAW);
    const position = gl.getAttribLocation(program, "position");
    gl.enableVertexAttribArray(position);
    gl.vertexAttribPointer(position, 3, gl.FLOAT, false, 0, 0);
    this.u = Object.fromEntries(
      ["projection", "rotation", "bands", "time", "level"].map((n) => [
        n, gl.getUniformLocation(program, n === "bands" ? "bands[0]" : n),
      ]),
    );
    gl.enable(gl.DEPTH_TEST);
    gl.enable(gl.CULL_FACE);
    this.bands = new Float32Array(BANDS);
    this.level = 0;
    this.analyser = null;
    this.spectrum = null;
  }

  /** Reads its bands from `analyser` from now on (null: rest). */
  setAnalyser(analyser) {
    this.analyser = analyser;
    this.spectrum = analyser ? new Uint8Array(analyser.frequencyBinCount) : null;
  }

  /** Log-spaced bands of the current spectrum, eased so the surface moves smoothly. */
  listen() {
    let total = 0;
    if (this.analyser) this.analyser.getByteFrequencyData(this.spectrum);
    const bins = this.spectrum ? this.spectrum.length : 0;
    for (let b = 0; b < BANDS; b++) {
      let value = 0;
      if (bins) {
        const lo = Math.floor(2 ** ((b / BANDS) * Math.log2(bins)));
        const hi = Math.max(lo + 1, Math.floor(2 ** (((b + 1) / BANDS) * Math.log2(bins))));
        for (let k = lo; k < hi; k++) value += this.spectrum[k];
        value /= (hi - lo) * 255;
      }
      this.bands[b] += (value - this.bands[b]) * (value > this.bands[b] ? 0.5 : 0.12);
      total += this.bands[b];
    }
    this.level = total / BANDS;
    this.canvas.dataset.level = this.level.toFixed(4);
  }

  draw(seconds) {
    const gl = this.gl;
    const { canvas } = this;
    const size = Math.round(canvas.clientWidth * (window.devicePixelRatio || 1));
    if (size > 0 && canvas.width !== size) canvas.width = canvas.height = size;
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.uniformMatrix4fv(this.u.projection, false, perspective(Math.PI / 4, 1, 0.1, 20));
    gl.uniformMatrix4fv(this.u.rotation, false, rotation(0.35 * Math.sin(seconds * 0.3), seconds * 0.4));
    gl.uniform1fv(this.u.bands, this.bands);
    gl.uniform1f(this.u.time, seconds);
    gl.uniform1f(this.u.level, this.level);
    gl.drawElements(gl.TRIANGLES, this.count, gl.UNSIGNED_SHORT, 0);
  }

  start() {
    const frame = (ms) => {
      this.listen();
      this.draw(ms / 1000);
      this.canvas.dataset.frames = String(Number(this.canvas.dataset.frames || 0) + 1);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }
}
